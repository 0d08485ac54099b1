from monailabel.interfaces.config import TaskConfig

from lib.conf import KEYS, conf_choice, conf_flag, conf_float, conf_int, conf_json, conf_text
from lib.networks import AttentionUNet2D5
from lib.scribbles.crf import DenseCRFParams
from lib.trainers.can_em import CanEMTrainTask

from .recipe import RecipeConfig


class CanEm(RecipeConfig, TaskConfig):
    """``can_em``: Can et al. 2018 -- random-walk seed areas, recursive hard EM with dense-CRF and
    MC-dropout (Welch test) relabelling, on the 2.5D attention UNet.

    Conf: the ``can_em_*`` keys of :mod:`lib.conf` (the paper's Table 1 rows are switches)."""

    CAN_ET_AL_DROPOUT = KEYS["can_em_dropout"].default
    """Dropout 0.5 in the 5 innermost blocks only (the encoder's 3 deepest levels, the decoder's 2
    deepest), as Can et al. (section 2.4; their ``unet2D_bn_dropout``: after pool3, pool4,
    conv5_2, conv6_2, conv7_2 of a 5-level U-Net). Their MC-dropout Welch test draws its spread
    from it: with a weak dropout (0.1) the test finds almost no voxel uncertain and the E step
    resets almost nothing."""

    def build_network(self, conf):
        rates = conf_json(conf, "can_em_dropout")
        placement = conf_choice(conf, "can_em_dropout_placement", ("units", "blocks"))
        return AttentionUNet2D5(
            in_channels=1, out_channels=self.convention.num_classes, dropout=rates, dropout_placement=placement
        )

    description = "Can et al.: random-walk seed areas + recursive EM with dense-CRF / MC-dropout relabelling"
    trainer_class = CanEMTrainTask

    def trainer_kwargs(self):
        conf = self.conf
        crf_slices = conf_choice(conf, "can_em_crf_mode", ("3d", "slice")) == "slice"
        return {
            "recursions": conf_int(conf, "can_em_recursions", minimum=1),
            "epochs_per_recursion": conf_int(conf, "can_em_epochs_per_recursion", minimum=0),
            "tau": conf_float(conf, "can_em_tau", minimum=0, maximum=1),
            "beta": conf_float(conf, "can_em_beta", minimum=0),
            "crf": (
                (DenseCRFParams.can_et_al_slices() if crf_slices else DenseCRFParams.can_et_al())
                if conf_flag(conf, "can_em_crf")
                else None
            ),
            "crf_per_slice": crf_slices,
            "seed_areas_per_slice": conf_choice(conf, "can_em_seed_areas", ("3d", "slice")) == "slice",
            "outer_slices_background": conf_flag(conf, "can_em_outer_slices_background"),
            "continued_schedule": conf_choice(conf, "can_em_schedule", ("restart", "continued")) == "continued",
            "uncertainty": conf_flag(conf, "can_em_uncertainty"),
            "passes": conf_int(conf, "can_em_passes", minimum=2),
            "alpha": conf_float(conf, "can_em_alpha", minimum=0, maximum=1),
            "relabel_tag": conf_text(conf, "can_em_relabel_tag"),
        }

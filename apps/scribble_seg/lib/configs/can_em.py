import json

from monailabel.interfaces.config import TaskConfig

from lib.networks import AttentionUNet2D5
from lib.scribbles.crf import DenseCRFParams
from lib.scribbles.random_walk import RandomWalkParams
from lib.scribbles.relabel import DEFAULT_ALPHA
from lib.scribbles.seed_areas import DEFAULT_TAU
from lib.trainers.can_em import MC_PASSES, CanEMTrainTask

from .recipe import RecipeConfig, conf_flag


class CanEm(RecipeConfig, TaskConfig):
    """``can_em``: Can et al. 2018 -- random-walk seed areas, recursive hard EM with dense-CRF and
    MC-dropout (Welch test) relabelling, on the 2.5D attention UNet.

    Conf (the paper's Table 1 rows are switches): ``can_em_recursions`` (3), ``can_em_crf`` and
    ``can_em_uncertainty`` (``true``/``false``), ``can_em_passes`` (50), ``can_em_alpha`` (0.05),
    ``can_em_tau`` (0.99), ``can_em_beta`` (random-walk beta), ``can_em_relabel_tag`` (``can_em``),
    ``can_em_epochs_per_recursion`` (0: ``max_epochs`` split over the recursions; N: N epochs each,
    as the paper trains every recursion to convergence), ``can_em_dropout`` (JSON: one rate for
    every block or one per level; default :data:`CAN_ET_AL_DROPOUT`)."""

    CAN_ET_AL_DROPOUT = (0.0, 0.0, 0.0, 0.5, 0.5, 0.5)
    """Dropout 0.5 in the 5 innermost blocks only (the encoder's 3 deepest levels, the decoder's 2
    deepest), as Can et al. (section 2.4; their ``unet2D_bn_dropout``: after pool3, pool4,
    conv5_2, conv6_2, conv7_2 of a 5-level U-Net). Their MC-dropout Welch test draws its spread
    from it: with a weak dropout (0.1) the test finds almost no voxel uncertain and the E step
    resets almost nothing."""

    def build_network(self, conf):
        rates = json.loads(conf.get("can_em_dropout", json.dumps(self.CAN_ET_AL_DROPOUT)))
        return AttentionUNet2D5(in_channels=1, out_channels=self.convention.num_classes, dropout=rates)

    description = "Can et al.: random-walk seed areas + recursive EM with dense-CRF / MC-dropout relabelling"
    trainer_class = CanEMTrainTask

    def trainer_kwargs(self):
        conf = self.conf
        return {
            "recursions": int(conf.get("can_em_recursions", 3)),
            "epochs_per_recursion": int(conf.get("can_em_epochs_per_recursion", 0)),
            "tau": float(conf.get("can_em_tau", DEFAULT_TAU)),
            "beta": float(conf.get("can_em_beta", RandomWalkParams.beta)),
            "crf": DenseCRFParams.can_et_al() if conf_flag(conf, "can_em_crf") else None,
            "uncertainty": conf_flag(conf, "can_em_uncertainty"),
            "passes": int(conf.get("can_em_passes", MC_PASSES)),
            "alpha": float(conf.get("can_em_alpha", DEFAULT_ALPHA)),
            "relabel_tag": conf.get("can_em_relabel_tag", "can_em"),
        }

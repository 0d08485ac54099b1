"""The network learns on CPU: ~100 iterations on one phantom, then eval-mode Dice well above chance;
batch-norm recalibration; recipe figures kept across stats publications."""

import numpy as np
import torch
from ignite.engine import Events

from lib.datasets.phantoms import make_cardiac_phantom
from lib.losses import MaskedDiceLoss, PartialCrossEntropyLoss
from lib.metrics import dice_per_class
from lib.networks import AttentionUNet2D5
from lib.trainers.precise_bn import recalibrate_batchnorm


def _patches(x, rng, n, size=64):
    for _ in range(n):
        cx, cy = rng.integers(0, x.shape[2] - size, size=2)
        yield (slice(None), slice(None), slice(cx, cx + size), slice(cy, cy + size), slice(None))


def test_attention_unet2d5_learns_a_phantom_in_100_iterations(convention):
    torch.manual_seed(0)
    p = make_cardiac_phantom(0)
    x = torch.as_tensor((p.image - p.image.mean()) / p.image.std())[None, None].float()
    y = torch.as_tensor(convention.from_dense(p.label))[None, None]  # dense targets through the same losses
    net = AttentionUNet2D5(out_channels=4, dropout=0.0, aspp_rates=None)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    pce, dice = PartialCrossEntropyLoss(convention), MaskedDiceLoss(convention)
    rng = np.random.default_rng(0)
    for sl in _patches(x, rng, 100):
        out = net(x[sl])["final"]
        loss = pce(out, y[sl]) + dice(out, y[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert recalibrate_batchnorm(net, (x[sl] for sl in _patches(x, rng, 16))) == 16
    net.eval()
    with torch.no_grad():
        pred = net(x)["final"].argmax(1)[0]
    d = dice_per_class(pred, torch.as_tensor(p.label), 4)
    chance = dice_per_class(
        torch.randint(0, 4, pred.shape, generator=torch.Generator().manual_seed(0)), torch.as_tensor(p.label), 4
    )
    assert d.min() > 0.6, d  # measured 0.73 / 0.75 / 0.80
    assert chance.max() < 0.05


def test_recalibration_leaves_weights_and_needs_batches():
    net = AttentionUNet2D5(dropout=0.0, aspp_rates=None)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert recalibrate_batchnorm(net, []) == 0
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # nothing to average over: statistics untouched
    recalibrate_batchnorm(net, [torch.randn(1, 1, 64, 64, 16) * 5 + 3])
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert not torch.equal(bn.running_mean, before[[k for k in before if k.endswith("running_mean")][0]])
    assert bn.momentum == 0.1 and net.training
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())


def test_recipe_stats_stay_in_every_later_publication(tmp_path):
    """A recipe's own figures (``record_stats``: can_em's per-recursion list) must survive the
    stats files the next training of the same request publishes every epoch."""
    import json
    import time

    from monai.engines import SupervisedTrainer
    from torch.utils.data import DataLoader

    from lib.trainers.publish import AtomicPublisher

    net = torch.nn.Conv3d(1, 2, 1)
    batch = {"image": torch.rand(1, 1, 4, 4, 4), "label": torch.zeros(1, 2, 4, 4, 4)}
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=DataLoader([batch], batch_size=None),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), 0.1),
        loss_function=torch.nn.MSELoss(),
    )
    stats_path, extra, seen = str(tmp_path / "train_stats.json"), {"recursions": [{"recursion": 1}]}, []
    publisher = AtomicPublisher(
        stats_path, "", "model.pt", time.time(), "run", str(tmp_path), trainer, None, extra_stats=extra
    )

    def publish(engine):
        publisher(engine)
        with open(stats_path) as f:
            seen.append(json.load(f))
        extra["recursions"] = extra["recursions"] + [{"recursion": 2}]  # recorded between publications

    trainer.add_event_handler(Events.EPOCH_COMPLETED, publish)
    trainer.run()
    assert [s["epoch"] for s in seen] == [1, 2]
    assert [len(s["recursions"]) for s in seen] == [1, 2]

import types

import pytest
import torch

from lib.networks import AttentionUNet2D5, ExModUNet, UNet2DBN, final_logits


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shape", [(1, 1, 96, 96, 16), (2, 1, 96, 96, 16), (1, 1, 37, 45, 7), (2, 1, 64, 80, 13)])
def test_attention_unet2d5_shapes(shape):
    net = AttentionUNet2D5(out_channels=4, deep_supervision=True).eval()
    with torch.no_grad():
        out = net(torch.randn(*shape))
    b, _, h, w, d = shape
    assert out["final"].shape == out["initial"].shape == (b, 4, h, w, d)
    assert out["boundary"].shape == (b, 1, h, w, d)
    assert len(out["attention"]) == 5 and all(a.shape[:2] == (b, 1) for a in out["attention"])
    assert len(out["deep_supervision"]) == 4 and all(o.shape[:2] == (b, 4) for o in out["deep_supervision"])
    assert torch.isfinite(out["final"]).all()


def test_attention_unet2d5_attention_maps_follow_the_anisotropic_strides():
    with torch.no_grad():
        out = AttentionUNet2D5().eval()(torch.randn(1, 1, 96, 96, 16))
    assert [tuple(a.shape[2:]) for a in out["attention"]] == [
        (6, 6, 4),
        (12, 12, 8),
        (24, 24, 16),
        (48, 48, 16),
        (96, 96, 16),
    ]  # in-plane-only on the top levels


def test_every_part_is_switchable():
    net = AttentionUNet2D5(aspp_rates=None, attention=False, boundary=False, refinement=False, dropout=0.0)
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 1, 32, 32, 8))
    assert set(out) == {"initial", "final"} and torch.equal(out["initial"], out["final"])
    assert net.aspp is None
    with pytest.raises(ValueError, match="needs boundary"):
        AttentionUNet2D5(boundary=False, refinement=True)
    with pytest.raises(ValueError, match="strides"):
        AttentionUNet2D5(channels=(8, 16), strides=((2, 2, 1), (2, 2, 1)))


def test_parameter_counts_match_the_docstrings():
    assert n_params(AttentionUNet2D5()) == 4_010_922
    assert n_params(AttentionUNet2D5(aspp_rates=None)) == 3_740_106
    assert n_params(AttentionUNet2D5(aspp_rates=None, attention=False, boundary=False, refinement=False)) == 3_009_935
    assert n_params(UNet2DBN()) == 34_526_084 and n_params(ExModUNet()) == 65_951_876
    assert n_params(UNet2DBN(features=(16, 32, 64, 128, 256))) == 2_161_892
    assert n_params(ExModUNet(features=(16, 32, 64, 128, 256))) == 4_129_316


def test_dropout_is_stochastic_in_train_mode_only():
    net = AttentionUNet2D5(dropout=0.3)
    x = torch.randn(1, 1, 32, 32, 8)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x)["final"], net(x)["final"])
    for m in net.modules():  # MC dropout: dropout on, batch norm frozen
        if isinstance(m, torch.nn.Dropout):
            m.train()
    with torch.no_grad():
        assert not torch.equal(net(x)["final"], net(x)["final"])


def test_dropout_per_level_reaches_only_the_blocks_of_those_levels():
    """Can et al.'s layout: 0.5 in the encoder's 3 deepest levels and the decoder's 2 deepest, 0 elsewhere."""
    net = AttentionUNet2D5(dropout=(0.0, 0.0, 0.0, 0.5, 0.5, 0.5))
    rates = {name.split(".adn")[0]: m.p for name, m in net.named_modules() if isinstance(m, torch.nn.Dropout)}
    active = sorted({k.split(".conv")[0] for k, p in rates.items() if p > 0})
    assert active == ["decoders.0", "decoders.1", "encoders.3", "encoders.4", "encoders.5", "ups.0", "ups.1"]
    assert set(rates.values()) == {0.0, 0.5}
    with pytest.raises(ValueError, match="one per level"):
        AttentionUNet2D5(dropout=(0.1, 0.1))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        AttentionUNet2D5(dropout=1.0)


def test_can_em_network_has_can_et_al_dropout_unless_conf_says_otherwise(convention):
    from lib.configs.can_em import CanEm

    def rates(conf):
        net = CanEm.build_network(
            types.SimpleNamespace(convention=convention, CAN_ET_AL_DROPOUT=CanEm.CAN_ET_AL_DROPOUT), conf
        )
        return sorted({m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)})

    assert rates({}) == [0.0, 0.5]
    assert rates({"can_em_dropout": "0.2"}) == [0.2]


def test_block_placement_puts_one_dropout_on_each_of_the_5_innermost_blocks(convention):
    """Can et al.'s layout: one dropout layer on the output of the encoder's 3 deepest blocks and
    the decoder's 2 deepest, none inside the residual units; still stochastic for MC dropout."""
    from lib.configs.can_em import CanEm

    net = AttentionUNet2D5(dropout=(0.0, 0.0, 0.0, 0.5, 0.5, 0.5), dropout_placement="blocks")
    active = sorted(n for n, m in net.named_modules() if isinstance(m, torch.nn.Dropout) and m.p > 0)
    assert active == [
        "decoder_dropout.0",
        "decoder_dropout.1",
        "encoder_dropout.3",
        "encoder_dropout.4",
        "encoder_dropout.5",
    ]
    same_weights = AttentionUNet2D5(dropout=(0.0, 0.0, 0.0, 0.5, 0.5, 0.5))
    assert net.state_dict().keys() == same_weights.state_dict().keys()  # checkpoints load either way
    x = torch.randn(1, 1, 32, 32, 8)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x)["final"], net(x)["final"])
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.train()
        assert not torch.equal(net(x)["final"], net(x)["final"])
    built = CanEm.build_network(types.SimpleNamespace(convention=convention), {"can_em_dropout_placement": "blocks"})
    assert len([m for m in built.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]) == 5
    with pytest.raises(ValueError, match="dropout_placement must be 'units' or 'blocks'"):
        AttentionUNet2D5(dropout_placement="everywhere")


@pytest.mark.parametrize("cls", [UNet2DBN, ExModUNet])
def test_2d_unets_run_slice_wise_on_volumes_and_on_slices(cls):
    net = cls(out_channels=4, features=(8, 16, 32, 64, 128)).eval()
    vol = torch.randn(2, 1, 37, 45, 5)
    with torch.no_grad():
        out = net(vol)
        assert out.shape == (2, 4, 37, 45, 5)
        # slice z of the volume output == the 2D output of slice z
        torch.testing.assert_close(out[..., 3], net(vol[..., 3]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="expected"):
        net(torch.randn(1, 1, 8))


def test_final_logits_of_tensor_and_dict():
    t = torch.zeros(1, 2, 3)
    assert final_logits(t) is t and final_logits({"final": t, "initial": None}) is t

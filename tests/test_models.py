"""Networks: shapes, parameter counts, ASPP variants, frozen BN, parameter groups, weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

from simtune.errors import ConfigError
from simtune.models import (
    ASPP,
    FrozenBatchNorm2d,
    Segmenter,
    build_discriminator,
    build_segmenter,
    count_parameters,
    load_init_weights,
)

RESNET101_NO_FC = 42_500_160  # torchvision resnet101 parameters (44,549,160) minus fc (2048*1000 + 1000)


def conv(model: nn.Module, name: str) -> nn.Conv2d:
    """The conv layer called ``name`` inside ``model``."""
    layer = model.get_submodule(name)
    assert isinstance(layer, nn.Conv2d)
    return layer


def tensor(model: nn.Module, name: str) -> Tensor:
    """A parameter or buffer of ``model`` by its state-dict name."""
    return model.state_dict()[name]


def aspp_params(in_channels: int, k: int) -> int:
    """Four 3x3 convs with bias from ``in_channels`` to ``k``."""
    return 4 * (in_channels * k * 9 + k)


@pytest.fixture(scope="module")
def r101() -> Segmenter:
    """A multi-level DeepLab-v2 that tests must not modify (except its train/eval mode)."""
    torch.manual_seed(0)
    return build_segmenter("resnet101", 19, multi_level=True)


def test_resnet101_shapes_and_stride_8(r101: Segmenter) -> None:
    with torch.no_grad():
        out = r101.eval()(torch.randn(1, 3, 65, 65))
    assert r101.feature_channels == 2048
    assert out.features.shape == (1, 2048, 9, 9)
    assert out.logits.shape == (1, 19, 9, 9)
    assert out.aux_logits is not None and out.aux_logits.shape == (1, 19, 9, 9)
    # DeepLab dilates every block of res4 by 2 and of res5 by 4 (not only the later blocks)
    assert {conv(r101, f"backbone.layer3.{i}.conv2").dilation for i in range(23)} == {(2, 2)}
    assert {conv(r101, f"backbone.layer4.{i}.conv2").dilation for i in range(3)} == {(4, 4)}


def test_resnet101_parameter_count(r101: Segmenter) -> None:
    single = build_segmenter("resnet101", 19)
    assert count_parameters(single) == RESNET101_NO_FC + aspp_params(2048, 19)
    assert count_parameters(r101) == RESNET101_NO_FC + aspp_params(2048, 19) + aspp_params(1024, 19)
    assert count_parameters(torchvision.models.resnet101(weights=None).fc) == 2048 * 1000 + 1000


@pytest.mark.parametrize("size, expected", [((96, 160), (12, 20)), ((65, 97), (9, 13))])
def test_small_shapes_and_stride_8(size: tuple[int, int], expected: tuple[int, int]) -> None:
    model = build_segmenter("small", 7, width=8, multi_level=True)
    out = model(torch.randn(2, 3, *size))
    assert model.feature_channels == 64
    assert out.features.shape == (2, 64, *expected)
    assert out.logits.shape == (2, 7, *expected)
    assert out.aux_logits is not None and out.aux_logits.shape == (2, 7, *expected)
    assert build_segmenter("small", 7, width=8).forward(torch.randn(1, 3, 32, 32)).aux_logits is None


def test_discriminator_parameter_count_and_output_size() -> None:
    for width, k in ((64, 19), (16, 5)):
        chans = [k, width, 2 * width, 4 * width, 8 * width, 1]
        expected = sum(a * b * 16 + b for a, b in zip(chans[:-1], chans[1:]))
        disc = build_discriminator(k, width=width)
        assert count_parameters(disc) == expected
        assert disc(torch.rand(2, k, 64, 96)).shape == (2, 1, 2, 3)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Sigmoid)) for m in build_discriminator().modules())


def branch_outputs(aspp: ASPP, x: Tensor) -> list[Tensor]:
    """Each ASPP branch applied to ``x`` on its own."""
    return [branch(x) for branch in aspp.branches]


def test_aspp_sums_all_branches_or_only_the_first_two() -> None:
    torch.manual_seed(0)
    full = ASPP(4, 3, (1, 2, 3, 4), all_branches=True)
    buggy = ASPP(4, 3, (1, 2, 3, 4), all_branches=False)
    buggy.load_state_dict(full.state_dict())
    x = torch.randn(1, 4, 10, 12)
    b = branch_outputs(full, x)
    torch.testing.assert_close(full(x), b[0] + b[1] + b[2] + b[3])
    torch.testing.assert_close(buggy(x), b[0] + b[1])
    assert not torch.allclose(full(x), buggy(x))


def test_segmenter_logits_follow_aspp_all_branches() -> None:
    model = build_segmenter("small", 5, width=8, aspp_all_branches=False)
    out = model(torch.randn(1, 3, 48, 64))
    b = branch_outputs(model.classifier, out.features)
    torch.testing.assert_close(out.logits, b[0] + b[1])
    assert count_parameters(model.classifier) == aspp_params(64, 5)  # unused branches still exist


def test_classify_works_on_pooled_vectors() -> None:
    model = build_segmenter("small", 5, width=8)
    pooled = torch.randn(6, model.feature_channels, 1, 1)
    # on a 1x1 input each dilated 3x3 conv only sees its centre tap
    expected = torch.zeros(6, 5)
    for i in range(4):
        branch = conv(model, f"classifier.branches.{i}")
        assert branch.bias is not None
        expected += pooled[:, :, 0, 0] @ branch.weight[:, :, 1, 1].T + branch.bias
    torch.testing.assert_close(model.classify(pooled)[:, :, 0, 0], expected)


def test_resnet101_batchnorm_is_frozen(r101: Segmenter) -> None:
    norms = [m for m in r101.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 104 and not any(isinstance(m, nn.BatchNorm2d) for m in r101.modules())
    assert not any(p.requires_grad for m in norms for p in m.parameters())
    before = {k: v.clone() for k, v in r101.state_dict().items() if "running" in k}
    x = torch.randn(1, 3, 17, 17)
    with torch.no_grad():
        train_out = r101.train()(x).logits
        eval_out = r101.eval()(x).logits
    after = r101.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    torch.testing.assert_close(train_out, eval_out)


def test_param_groups_split_backbone_and_heads(r101: Segmenter) -> None:
    groups = {g["name"]: g for g in r101.param_groups(2.5e-4, 10.0)}
    assert groups["head"]["lr"] == pytest.approx(10 * groups["backbone"]["lr"])
    assert all(g["initial_lr"] == g["lr"] for g in groups.values())
    heads = [p for name, p in r101.named_parameters() if "classifier." in name]
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in heads}
    grouped = [p for g in groups.values() for p in g["params"]]
    assert all(p.requires_grad for p in grouped)
    norms = [m for m in r101.modules() if isinstance(m, FrozenBatchNorm2d)]
    bn_affine = sum(p.numel() for m in norms for p in m.parameters())
    assert sum(p.numel() for p in grouped) == count_parameters(r101) - bn_affine
    assert count_parameters(r101, trainable_only=True) == count_parameters(r101) - bn_affine


def test_load_torchvision_resnet101(tmp_path: Path) -> None:
    tv = torchvision.models.resnet101(weights=None)
    path = tmp_path / "resnet101.pth"
    torch.save(tv.state_dict(), path)
    model = build_segmenter("resnet101", 19)
    report = load_init_weights(model, path)
    backbone_keys = {k for k in model.state_dict() if k.startswith("backbone.")}
    assert backbone_keys <= set(report.loaded)
    assert sorted(s.split(":")[0] for s in report.skipped) == ["fc.bias", "fc.weight"]
    assert report.missing and all(k.startswith("classifier.") for k in report.missing)
    name = "layer4.2.conv3.weight"
    torch.testing.assert_close(tensor(model, f"backbone.{name}"), tensor(tv, name), rtol=0, atol=0)
    n = len(backbone_keys)
    assert report.summary().startswith(f"loaded {n}/{n + 2} tensors from {path}")
    # torchvision layout (stride in the 3x3 conv): up to res3 the two networks agree exactly
    stem = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        ours = nn.Sequential(*(model.backbone.get_submodule(s) for s in stem))(x)
        theirs = nn.Sequential(*(tv.eval().get_submodule(s) for s in stem))(x)
    assert report.layout == "torchvision"
    torch.testing.assert_close(ours, theirs)


def scale_keyed(model: Segmenter) -> dict[str, Tensor]:
    """The authors' DeepLab naming of a segmenter's state dict."""
    renamed = {}
    for key, value in model.state_dict().items():
        key = key.replace("backbone.", "Scale.", 1)
        key = key.replace("aux_classifier.branches.", "Scale.layer5.conv2d_list.")
        main_head = "layer6" if model.aux_classifier is not None else "layer5"
        key = key.replace("classifier.branches.", f"Scale.{main_head}.conv2d_list.")
        renamed[key] = value
    return renamed


def test_load_scale_keyed_deeplab_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    coco = build_segmenter("resnet101", 21)
    path = tmp_path / "deeplab_init.pth"
    torch.save(scale_keyed(coco), path)
    model = build_segmenter("resnet101", 19)
    head_before = tensor(model, "classifier.branches.0.weight").clone()
    report = load_init_weights(model, path)
    assert len(report.skipped) == 8
    assert all(s.endswith(": classifier: 21 classes != 19") for s in report.skipped)
    assert "skipped 8 (classifier: 21 classes != 19)" in report.summary()
    for name in ("backbone.layer3.7.conv2.weight", "backbone.bn1.running_var"):
        torch.testing.assert_close(tensor(model, name), tensor(coco, name), rtol=0, atol=0)
    torch.testing.assert_close(tensor(model, "classifier.branches.0.weight"), head_before)
    # the Caffe layout puts the stride on the 1x1 conv and uses a ceil-mode max-pool
    assert report.layout == "caffe" and conv(model, "backbone.layer2.0.conv1").stride == (2, 2)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).logits.shape[-2:] == (9, 9)


def test_load_multi_level_checkpoint_with_wrappers(tmp_path: Path) -> None:
    source = build_segmenter("small", 5, width=8, multi_level=True)
    wrapped = {"model": {f"module.{k}": v for k, v in scale_keyed(source).items()}, "iteration": 3}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    model = build_segmenter("small", 5, width=8, multi_level=True)
    report = load_init_weights(model, tmp_path / "ckpt.pth")
    assert report.skipped == () and report.missing == ()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(tensor(model, name), value, rtol=0, atol=0)


def test_load_refuses_bad_files(tmp_path: Path, r101: Segmenter) -> None:
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="other.pth: no tensor matched the resnet101 model"):
        load_init_weights(r101, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="absent.pth: init weights file not found"):
        load_init_weights(r101, tmp_path / "absent.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pth: cannot read init weights"):
        load_init_weights(r101, tmp_path / "garbage.pth")


def test_unknown_backbone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backbone must be one of"):
        build_segmenter("resnet50")

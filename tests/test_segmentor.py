"""The Segmentor: loss names of forward_train (aux included in the total), logits at the input size for
HRNet and a coarse PSPNet (which now trains), uint8 and float inputs normalised alike, checkpoints keyed
exactly as the bare network's, norm_eval, and the inference-only form."""

import pytest
import torch
import torch.nn.functional as F

from checkpoint_fixtures import one_thread  # noqa: F401 (autouse fixture)
from unifiedseg.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from unifiedseg.losses import build_losses
from unifiedseg.models import HRNetV2Seg, PSPNet, Segmentor, is_loss_name, total_loss

NUM_CLASSES = 5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def segmentor(network, **kwargs):
    return Segmentor(network=network, loss_set=build_losses({"type": "CrossEntropyLoss"}, NUM_CLASSES),
                     num_classes=NUM_CLASSES, **kwargs)


def hrnet():
    return HRNetV2Seg(backbone="hrnet_w18_small", num_classes=NUM_CLASSES)


def pspnet(**kwargs):
    return PSPNet(backbone="resnet18", num_classes=NUM_CLASSES, **kwargs)


def batch(n=2, h=64, w=64, datasets=("a", "b")):
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, NUM_CLASSES, (n, h, w), generator=generator, dtype=torch.uint8)
    labels[:, :4] = IGNORE_INDEX
    return {"image": torch.randint(0, 256, (n, 3, h, w), generator=generator, dtype=torch.uint8), "label": labels,
            "dataset": list(datasets)}


def test_forward_train_names_its_losses_and_what_logging_reads():
    model = segmentor(hrnet()).train()
    outputs = model(batch(), dataset_losses=True)
    assert set(outputs) == {"loss_ce", "predictions", "labels", "dataset_losses"}
    assert outputs["predictions"].shape == outputs["labels"].shape == (2, 64, 64)
    assert set(outputs["dataset_losses"]) == {"a", "b"}
    assert "dataset_losses" not in model(batch())
    # PSPNet's auxiliary loss is named, weighted and part of the total that is backpropagated
    model = segmentor(pspnet(aux_weight=0.4)).train()
    outputs = model(batch())
    assert {name for name in outputs if is_loss_name(name)} == {"loss_ce", "aux_loss_ce"}
    total_loss(outputs).backward()
    aux_grads = [p.grad for p in model.network.aux_head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in aux_grads)


def test_logits_come_at_the_input_size_for_hrnet_and_a_coarse_pspnet():
    images = torch.randint(0, 256, (1, 3, 70, 50), dtype=torch.uint8)
    coarse = pspnet(zoom_factor=2)  # output_stride 8: logits at stride 4
    assert coarse.logits_stride == 4
    for network in (hrnet(), coarse):
        model = Segmentor(network=network).eval()
        with torch.no_grad():
            assert model.predict_logits(images).shape == (1, NUM_CLASSES, 70, 50)
    # the coarse logits are upsampled to 4x their size and cropped, as the tiles of unifiedseg.inference
    with torch.no_grad():
        raw = coarse(Segmentor(network=coarse).normalize(images))["logits"]
        expected = F.interpolate(raw, size=(raw.shape[-2] * 4, raw.shape[-1] * 4), mode="bilinear",
                                 align_corners=False)[..., :70, :50]
        torch.testing.assert_close(Segmentor(network=coarse).eval().predict_logits(images), expected)


def test_a_pspnet_with_zoom_factor_below_its_output_stride_trains_a_step():
    model = segmentor(pspnet(zoom_factor=1, aux_weight=0.4)).train()  # logits at stride 8
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = model.network.head[-1].weight.detach().clone()
    outputs = model(batch(h=48, w=40))
    loss = total_loss(outputs)
    assert torch.isfinite(loss) and outputs["predictions"].shape == (2, 48, 40)
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.network.head[-1].weight)


def test_uint8_images_are_normalised_exactly_as_float_ones():
    model = Segmentor(network=hrnet()).eval()
    images = torch.randint(0, 256, (2, 3, 40, 36), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.equal(model.normalize(images), model.normalize(images.float()))
    assert torch.allclose(model.normalize(images), (images.float() - mean) / std)
    assert model.normalize(images[0]).shape == (3, 40, 36)
    with torch.no_grad():
        from_uint8 = model.predict_logits(images)
        assert torch.equal(from_uint8, model.predict_logits(images.float()))
        assert torch.equal(from_uint8, model.predict_logits(model.normalize(images), normalized=True))
        padded = F.pad((images.float() - mean) / std, (0, 28, 0, 24))  # to 64 x 64, HRNet's multiple of 32
        stride4 = model.network(padded)["logits"]
        upsampled = F.interpolate(stride4, size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(from_uint8, upsampled[..., :40, :36])
    with pytest.raises(ValueError, match="uint8 or float"):
        model.normalize(images.long())


def test_checkpoints_hold_exactly_the_networks_weights():
    network = pspnet(aux_weight=0.4)
    model = segmentor(network)
    assert list(model.state_dict()) == list(network.state_dict())  # no network. prefix, no mean/std, no losses
    other = segmentor(pspnet(aux_weight=0.4))
    other.load_state_dict(network.state_dict())  # an old checkpoint's "model" entry
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), network.state_dict().values()))
    assert "mean" not in model.state_dict() and model.mean.shape == (1, 3, 1, 1)
    assert model.with_network(other.network).network is other.network


def test_norm_eval_keeps_batch_norm_statistics_frozen_in_training_mode():
    model = segmentor(hrnet(), norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.network.classifier.training
    assert all(m.training for m in segmentor(hrnet()).train().modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_an_inference_segmentor_refuses_to_train():
    with pytest.raises(RuntimeError, match="no loss set"):
        Segmentor(network=hrnet()).train()(batch())
    with pytest.raises(ValueError, match=r"std must be 3 numbers .* > 0"):
        Segmentor(network=hrnet(), std=(1.0, 0.0, 1.0))

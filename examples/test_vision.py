"""Vision models from torchvision, built from their constructors (random weights)."""

import pytest
import torch

from pytest_flops import Flops

torchvision = pytest.importorskip("torchvision")


def test_resnet18_train_step(flops: Flops) -> None:
    model = torchvision.models.resnet18()
    x = torch.randn(2, 3, 224, 224)
    with flops(model):
        model(x).sum().backward()
    # backward recomputes no forward work: it is about twice the forward
    assert flops.total == flops.forward + flops.backward
    assert flops.by_module["ResNet.layer1"]["aten.convolution"] > 0


def test_vit_forward(flops: Flops) -> None:
    model = torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=4, num_heads=4, hidden_dim=128, mlp_dim=256
    ).eval()
    with torch.no_grad(), flops(model):
        model(torch.randn(2, 3, 64, 64))
    assert flops.backward == 0

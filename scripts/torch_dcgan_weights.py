#!/usr/bin/env python3
"""Exports a pytorch/examples DCGAN generator's weights for kiln to load
(tests/nn.rs, `dcgan_generator_loads_pytorch_weights`). Needs torch and
safetensors.

    python3 scripts/torch_dcgan_weights.py

Builds the Generator of pytorch/examples/dcgan/main.py (64×64 output; here
nz 16, ngf 8, nc 1 to keep the fixture small), initialises it with that
script's weights_init, runs three training-mode batches so the BatchNorm
buffers (running_mean, running_var, num_batches_tracked) are not at their
defaults, and writes, under tests/fixtures/torch/:
- dcgan_generator_64.safetensors: `netG.state_dict()`, exactly as a user
  exports a trained model (safetensors.torch.save_file; never pickle);
- dcgan_generator_64_images.safetensors: fixed noise and the images netG
  draws from it in eval mode and in training mode (float32).
"""
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch")
nz, ngf, nc = 16, 8, 1


class Generator(nn.Module):
    """pytorch/examples/dcgan/main.py's Generator, unchanged but for ngpu."""

    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


def weights_init(m):
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


def main():
    torch.manual_seed(64)
    torch.set_num_threads(1)
    net = Generator()
    net.apply(weights_init)
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, nz, 1, 1))
    save_file(net.state_dict(), os.path.join(OUT, "dcgan_generator_64.safetensors"))
    noise = torch.randn(4, nz, 1, 1)
    with torch.no_grad():
        net.eval()
        eval_images = net(noise)
        net.train()
        train_images = net(noise)
    images = {"noise": noise, "eval": eval_images.contiguous(), "train": train_images.contiguous()}
    save_file(images, os.path.join(OUT, "dcgan_generator_64_images.safetensors"))
    for f in ("dcgan_generator_64.safetensors", "dcgan_generator_64_images.safetensors"):
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()

"""The image room: listing and decoding image sets, the decoded-image cache, transforms, backbones and
the image network, behind the modality interface (harness.modality) in `harness.image.modality`."""

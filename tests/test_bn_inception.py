"""BN-Inception against its original (pretrainedmodels 0.7.4), and the backbone registry around it."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib
import threading
from pathlib import Path

import pytest
import timm
import torch

from harness.errors import HarnessError
from harness.image.backbones import (
    available_backbones,
    bn_inception,
    check_backbone_name,
    create_backbone,
    load_weights,
    weight_metadata,
)

# `harness.image.backbones.bn_inception` is the re-exported function; the module is in sys.modules
bn_module = importlib.import_module("harness.image.backbones.bn_inception")

BGR_MEAN = torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def original():
    """The port itself, with random weights and random BatchNorm statistics (so a mixed-up key shows)."""
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    torch.manual_seed(0)
    model = pretrainedmodels.bninception(num_classes=1000, pretrained=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def original_state(original):
    """The port's state dict, classifier included, as its weights file holds it."""
    return {k: v.clone() for k, v in original.state_dict().items()}


def trunk_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("last_linear.")}


def bgr_images(size: int, batch: int = 2) -> torch.Tensor:
    """Random BGR pixels in [0, 255] minus the ImageNet mean, the port's input."""
    generator = torch.Generator().manual_seed(size)
    return torch.rand(batch, 3, size, size, generator=generator) * 255.0 - BGR_MEAN


def test_names_and_shapes_equal_the_original(original):
    ours = {k: tuple(v.shape) for k, v in bn_inception().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in original.state_dict().items() if not k.startswith("last_linear.")}
    assert list(ours) == list(theirs)  # same order too, so the files list alike
    assert ours == theirs
    assert [n for n, _ in bn_inception().named_parameters()] == [
        n for n, _ in original.named_parameters() if not n.startswith("last_linear.")]


@pytest.mark.parametrize("size", [224, 227])
def test_same_weights_give_the_original_features(original, original_state, size):
    ours = bn_inception()
    ours.load_state_dict(trunk_state(original_state), strict=True)
    ours.eval()
    images = bgr_images(size)
    with torch.no_grad():
        expected = original.features(images.clone())
        assert expected.shape[-2:] == (7, 7)
        expected = original.global_pool(expected).flatten(1)
        got = ours(images.clone())
    assert got.shape == (2, 1024) == expected.shape
    scale = expected.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale)


def test_input_sizes_that_fit_are_those_the_original_runs(original):
    with torch.no_grad():
        for size in (8, 22, 23, 30, 31, 32, 38, 39, 47, 62, 63, 64, 70, 71, 94, 95, 102, 103, 126, 127):
            images = bgr_images(size, batch=1)
            try:
                original.features(images.clone())
                runs = True
            except RuntimeError:
                runs = False
            assert bn_module.input_side_fits(size) == runs, size
    model = bn_inception().eval()
    with torch.no_grad():
        for size in (31, 32, 64):
            assert model(bgr_images(size, batch=1)).shape == (1, 1024)
        with pytest.raises(HarnessError, match="40x40"):
            model(bgr_images(40, batch=1))


def test_trains_at_the_smoke_size():
    model = bn_inception().train()
    features = model(bgr_images(32, batch=4))
    features.sum().backward()
    assert model.conv1_7x7_s2.weight.grad is not None


def test_weights_file_with_the_original_keys_loads(original, original_state, tmp_path):
    path = tmp_path / "bn.pth"
    torch.save(original_state, path)  # last_linear.* included, as in the published file
    model = bn_inception(weights=path)
    for key, value in trunk_state(original_state).items():
        assert torch.equal(model.state_dict()[key], value), key


def test_weights_file_from_before_num_batches_tracked_loads(original_state, tmp_path):
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in original_state.items() if not k.endswith("num_batches_tracked")}, path)
    model = bn_inception(weights=str(path))
    assert torch.equal(model.conv1_7x7_s2.weight, original_state["conv1_7x7_s2.weight"])


def test_weights_file_with_a_wrong_shape_names_the_key(original_state, tmp_path):
    state = dict(original_state)
    state["inception_3a_1x1.weight"] = torch.zeros(64, 193, 1, 1)
    path = tmp_path / "wrong_shape.pth"
    torch.save(state, path)
    with pytest.raises(HarnessError) as caught:
        bn_inception(weights=path)
    message = str(caught.value)
    assert "'inception_3a_1x1.weight' has shape [64, 193, 1, 1] in the file but [64, 192, 1, 1]" in message
    assert str(path) in message and "\n" not in message


def test_weights_file_with_a_missing_key_names_the_key(original_state, tmp_path):
    state = dict(original_state)
    del state["inception_4c_pool_proj_bn.running_var"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(HarnessError, match=r"key 'inception_4c_pool_proj_bn\.running_var' is missing"
                                           r" from the file \(1 keys missing, 0 unexpected"):
        bn_inception(weights=path)


def test_weights_file_with_an_extra_key_or_that_does_not_load(original_state, tmp_path):
    state = dict(original_state)
    state["inception_6a_1x1.weight"] = torch.zeros(1)
    extra = tmp_path / "extra.pth"
    torch.save(state, extra)
    with pytest.raises(HarnessError, match="'inception_6a_1x1.weight' in the file is not in the model"):
        bn_inception(weights=extra)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a state dict")
    with pytest.raises(HarnessError, match="junk.pth does not load"):
        bn_inception(weights=junk)
    with pytest.raises(HarnessError, match="absent.pth does not load"):
        bn_inception(weights=tmp_path / "absent.pth")


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@pytest.fixture
def local_weights_server(tmp_path, original_state):
    """A 127.0.0.1 server holding a state dict under the hub's name scheme, bn_inception-<sha256>.pth."""
    served = tmp_path / "served"
    served.mkdir()
    staging = tmp_path / "staging.pth"
    torch.save(original_state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    file_name = f"bn_inception-{digest[:10]}.pth"
    staging.rename(served / file_name)
    (served / "bn_inception-0000000000.pth").hardlink_to(served / file_name)  # a name whose hash is wrong

    class Handler(_CountingHandler):
        requests: list[str] = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{file_name}", Handler.requests
    finally:
        server.shutdown()
        server.server_close()


def _local_only(monkeypatch, torch_home: Path) -> None:
    """A private hub cache, and no proxy that could carry the request off this machine."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def test_imagenet_weights_download_once_into_the_hub_cache(local_weights_server, original_state, tmp_path,
                                                          monkeypatch):
    url, requests = local_weights_server
    assert url.startswith("http://127.0.0.1:")
    torch_home = tmp_path / "torch_home"
    _local_only(monkeypatch, torch_home)
    spec = bn_module.IMAGENET_WEIGHTS
    assert spec.file_name == "bn_inception-52deb4733.pth"
    monkeypatch.setattr(bn_module, "IMAGENET_WEIGHTS", dataclasses.replace(spec, url=url))

    first = bn_inception(weights="imagenet")
    cached = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    assert cached.is_file()
    assert len(requests) == 1
    assert torch.equal(first.inception_5b_pool_proj_bn.running_var,
                       original_state["inception_5b_pool_proj_bn.running_var"])

    second = create_backbone("bn_inception", pretrained=True, weights=None, in_chans=3)
    assert len(requests) == 1  # served from the cache
    assert torch.equal(second.conv1_7x7_s2.weight, original_state["conv1_7x7_s2.weight"])


def test_imagenet_weights_with_a_wrong_hash_fail_in_one_line(local_weights_server, tmp_path, monkeypatch):
    url, requests = local_weights_server
    torch_home = tmp_path / "torch_home"
    _local_only(monkeypatch, torch_home)
    wrong = url.rsplit("/", 1)[0] + "/bn_inception-0000000000.pth"
    monkeypatch.setattr(bn_module, "IMAGENET_WEIGHTS", dataclasses.replace(bn_module.IMAGENET_WEIGHTS, url=wrong))
    with pytest.raises(HarnessError, match="cannot fetch the BN-Inception ImageNet weights.*invalid hash") as caught:
        bn_inception(weights="imagenet")
    assert "\n" not in str(caught.value)
    assert requests == ["/bn_inception-0000000000.pth"]
    assert not (torch_home / "hub" / "checkpoints" / "bn_inception-0000000000.pth").exists()


def test_create_backbone_bn_inception_and_timm():
    assert available_backbones() == ["bn_inception"]
    ours = create_backbone("bn_inception", pretrained=False, weights=None, in_chans=3).eval()
    assert ours.num_features == 1024
    with torch.no_grad():
        assert ours(bgr_images(64)).shape == (2, 1024)
    resnet = create_backbone("resnet18", pretrained=False, weights=None, in_chans=3).eval()
    assert isinstance(resnet.num_features, int)
    with torch.no_grad():
        assert resnet(torch.randn(2, 3, 64, 64)).shape == (2, resnet.num_features)
    with pytest.raises(HarnessError, match="3-channel"):
        create_backbone("bn_inception", pretrained=False, weights=None, in_chans=1)
    with pytest.raises(HarnessError, match="not both"):
        create_backbone("resnet18", pretrained=True, weights="w.pth", in_chans=3)


def test_unknown_backbone_names_the_choices():
    check_backbone_name("bn_inception")
    check_backbone_name("resnet18")
    with pytest.raises(HarnessError) as caught:
        check_backbone_name("no_such_net")
    message = str(caught.value)
    assert "'no_such_net'" in message and "bn_inception" in message and "timm.list_models()" in message
    assert f"{len(timm.list_models()):,}" in message and "\n" not in message
    with pytest.raises(HarnessError, match="no_such_net"):
        create_backbone("no_such_net", pretrained=False, weights=None, in_chans=3)


def test_timm_backbone_loads_a_weights_file_with_its_classifier(tmp_path: Path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=3)
    state = dict(source.state_dict())
    state["fc.weight"] = torch.randn(1000, source.num_features)  # the classifier a timm checkpoint carries
    state["fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = create_backbone("resnet18", pretrained=False, weights=path, in_chans=3)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, path)
    with pytest.raises(HarnessError, match="do not fit backbone resnet18: 'layer1.0.conv1.weight' has shape"):
        load_weights(model, path, backbone="resnet18")


def test_weight_metadata():
    assert weight_metadata("bn_inception", True) == {
        "input_size": 224, "channel_order": "BGR", "pixel_range": 255.0,
        "mean": [104.0, 117.0, 128.0], "std": [1.0, 1.0, 1.0]}
    assert weight_metadata("bn_inception", False) is None
    resnet = weight_metadata("resnet18", True)
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert resnet == {"input_size": cfg.input_size[-1], "channel_order": "RGB", "pixel_range": 1.0,
                      "mean": list(cfg.mean), "std": list(cfg.std)}
    assert weight_metadata("resnet18", False) is None

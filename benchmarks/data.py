"""Benchmark the training input pipeline with and without the decoded-image cache.

Compares, on the same synthetic CUB-sized JPEGs, the same batches and in one run:
  plain - what a torchvision pipeline does per image every epoch: PIL decode, convert("RGB"),
          Resize(256) on the shorter side (harness.image.data.cache.decode_resized), then the harness's
          RandomResizedCrop(227), flip and BGR/0-255/mean/std normalisation (harness.image.transforms.train_batch);
  cache - train_batch on an ImageSet over the memory-mapped ImageCache (decoded and resized once).
Both ways give bitwise the same batches (checked by a checksum); only train_batch is timed, with
torch on one thread (the input pipeline runs beside the training). The cache's one-off build is
timed on its own. Each measurement runs in a fresh subprocess, so that its peak memory is its own,
and the cache way runs again on a dataset 4x larger, whose peak should not grow: the memmap is
paged in on demand and only the batches' pages are touched.

    python benchmarks/data.py [--images 512 --batches 40 --repeat 3 --json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.memory import proc_status_bytes  # noqa: E402
from harness.protocol import ImageSettings, load_protocol  # noqa: E402  (no torch: the driver stays small)

TARGET_SPEEDUP = 3.0  # cache / plain images per second: at least 3x
# The cache way's peak RSS less the cache's mapped pages, at 4N against N: the process's own memory
# must not grow with the dataset (the pages of the cache that the batches touched are reported apart).
TARGET_PEAK_GROWTH_BYTES = 32e6
SCALE = 4  # the larger dataset of the scaling check: every file listed this many times
BATCH_SIZE = 32  # the reality check's batch
WARMUP = 3  # untimed batches first: libjpeg, torch kernels and the allocator warm up
CLASSES = 16
QUALITY = 90
WAYS = ("plain", "cache")
MB = 1e6


# ------------------------------------------------------------------------------------------ the data


def make_jpeg(path: Path, number: int, seed: int, size: int) -> tuple[int, int]:
    """One CUB-like JPEG (width 0.8-1 x size, height 0.6-1 x size; at 500: 400-500 x 300-500).

    Smooth colour gradients, a mid-frequency texture and pixel noise, so that the files have the
    sizes of photographs at quality 90 (30-80 KB at 500 px) and decoding costs what it costs on CUB:
    flat or pure-noise images would be far cheaper or far dearer to decode. Seeded per image, so the
    first N files are the same whatever N.
    """
    from PIL import Image

    rng = np.random.default_rng([seed, number])
    width = int(rng.integers(int(0.8 * size), size + 1))
    height = int(rng.integers(int(0.6 * size), size + 1))
    coarse = rng.integers(0, 256, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    texture = rng.standard_normal((height // 8 + 1, width // 8 + 1), dtype=np.float32) * 30 + 128
    texture = Image.fromarray(texture.clip(0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    pixels += np.asarray(texture, dtype=np.float32)[..., None] - 128
    pixels += rng.standard_normal((height, width, 3), dtype=np.float32) * 5
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, "JPEG", quality=QUALITY)
    return width, height


def make_files(root: Path, n: int, seed: int, size: int, scaling: bool) -> dict:
    """N JPEGs under root/img, and for the scaling check SCALE - 1 folder symlinks to it (the larger
    dataset lists every file under SCALE paths, so the cache decodes and stores each SCALE times)."""
    (root / "img").mkdir(parents=True)
    shapes = np.array([make_jpeg(root / "img" / f"{i:05d}.jpg", i, seed, size) for i in range(n)])
    if scaling:
        for copy in range(1, SCALE):
            (root / f"link{copy}").symlink_to("img", target_is_directory=True)
    kb = np.array([(root / "img" / f"{i:05d}.jpg").stat().st_size for i in range(n)]) / 1e3
    return {"widths": [int(shapes[:, 0].min()), int(shapes[:, 0].max())],
            "heights": [int(shapes[:, 1].min()), int(shapes[:, 1].max())],
            "jpeg_kb": [float(kb.min()), float(kb.mean()), float(kb.max())]}


def listed_paths(n: int, copies: int) -> tuple[str, ...]:
    return tuple(f"{'img' if copy == 0 else f'link{copy}'}/{i:05d}.jpg" for copy in range(copies) for i in range(n))


def image_list(root: Path, n: int, copies: int):
    """The files as an ImageList, as a dataset loader returns them (16 classes, round robin)."""
    from harness.image.data.listing import ImageList

    paths = listed_paths(n, copies)
    return ImageList(name="bench", root=root, paths=paths, labels=np.arange(len(paths), dtype=np.int64) % CLASSES,
                     class_names=tuple(str(c) for c in range(CLASSES)), annotation_files=())


def version(copies: int) -> str:
    """Any name unique within the run's temporary cache folder will do: nothing outlives the run."""
    return f"bench-x{copies}"


def bench_settings(resize: int, crop: int) -> ImageSettings:
    """The reality check's image settings for CUB, with the resize and crop sizes overridable for tests."""
    settings = load_protocol("reality_check", dataset="cub200").images
    return replace(settings, resize=resize or settings.resize, image_size=crop or settings.image_size)


# ------------------------------------------------------------------------------------------ worker side


def _peak_bytes() -> tuple[int, str]:
    """This process's own peak RSS. VmHWM is the peak of the memory image since exec; ru_maxrss is the
    same mark but keeps, through fork and exec, that of the driver that started us, so it is only the
    fallback (and equal to VmHWM whenever this process outgrew the driver)."""
    try:
        return proc_status_bytes("VmHWM"), "VmHWM"
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"


def _mapped_rss(suffix: str) -> int:
    """Resident bytes of this process's mappings of the file whose path ends with `suffix`: the pages of
    the cache that the batches paged in (clean file pages, which the kernel can drop under pressure)."""
    total, inside = 0, False
    try:
        with open("/proc/self/smaps") as fh:
            for line in fh:
                first = line.split(maxsplit=1)[0] if line.strip() else ""
                if "-" in first and not first.endswith(":"):  # a mapping's header: address range, perms, path
                    inside = line.rstrip().endswith(suffix)
                elif inside and first == "Rss:":
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


class DecodedPixels:
    """The `pixels` of an ImageSet that decodes every image when asked, as a per-epoch pipeline does:
    train_batch then does exactly its crop, flip and normalisation work on the fresh array."""

    def __init__(self, images, resize: int):
        self.files = [images.root / path for path in images.paths]
        self.resize = resize

    def __len__(self) -> int:
        return len(self.files)

    def image(self, row: int) -> np.ndarray:
        from harness.image.data.cache import decode_resized

        return decode_resized(self.files[row], self.resize)


def build_worker(args: argparse.Namespace) -> None:
    """Build the cache of each listing (1x, and SCALE x for the scaling check), timing each build."""
    from harness.image.data.cache import build_cache

    settings = bench_settings(args.resize, args.crop)
    builds = []
    for copies in (1, SCALE) if args.scaling else (1,):
        images = image_list(args.root, args.images, copies)
        start = time.perf_counter()
        cache = build_cache(images, version(copies), settings.resize, args.cache, progress=False)
        seconds = time.perf_counter() - start
        builds.append({"copies": copies, "images": len(images), "seconds": seconds,
                       "images_per_s": len(images) / seconds, "pixels_bytes": int(len(cache.pixels))})
    peak, how = _peak_bytes()
    print(json.dumps({"builds": builds, "workers": min(os.cpu_count() or 1, 8), "peak": peak, "peak_how": how}))


def timed_worker(args: argparse.Namespace) -> None:
    """Time train_batch over the batches of one way; print the figures as JSON on the last line of stdout."""
    import warnings

    import torch

    from harness.image.data import ImageSet
    from harness.image.data.cache import ImageCache, cache_folder
    from harness.image.transforms import train_batch

    # torch warns once that the read-only arrays (memmap views, PIL's) are not writable; train_batch only reads
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    torch.set_num_threads(1)
    settings = bench_settings(args.resize, args.crop)
    images = image_list(args.root, args.images, args.copies)
    if args.worker == "cache":
        pixels = ImageCache(cache_folder(args.cache, version(args.copies), settings.resize))
    else:
        pixels = DecodedPixels(images, settings.resize)
    data = ImageSet(images.name, version(args.copies), pixels, np.arange(len(images)),
                    torch.from_numpy(images.labels), images.class_names, channels=3)
    rng = np.random.default_rng(args.seed)
    batches = [rng.choice(len(images), BATCH_SIZE, replace=False) for _ in range(WARMUP + args.batches)]
    generator = torch.Generator().manual_seed(args.seed)
    baseline = proc_status_bytes("VmRSS")  # after the imports and the setup, before the first batch
    for items in batches[:WARMUP]:
        train_batch(data, items, settings, generator)
    seconds, checksum = 0.0, 0
    for items in batches[WARMUP:]:
        start = time.perf_counter()
        batch = train_batch(data, items, settings, generator)
        seconds += time.perf_counter() - start
        checksum = zlib.crc32(batch.numpy(), checksum)  # untimed: proves both ways give the same batches
    peak, how = _peak_bytes()
    touched = np.unique(np.concatenate(batches))
    info = {"seconds": seconds, "images_per_s": args.batches * BATCH_SIZE / seconds, "peak": peak, "peak_how": how,
            "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "baseline": baseline,
            "checksum": checksum, "shape": list(batch.shape), "dtype": str(batch.dtype),
            "threads": torch.get_num_threads(), "dataset_images": len(images), "touched_images": len(touched)}
    if args.worker == "cache":
        offsets = pixels.index[touched]
        info |= {"cache_rss": _mapped_rss("pixels.u8"), "pixels_bytes": int(len(pixels.pixels)),
                 "touched_bytes": int((offsets[:, 1] * offsets[:, 2] * 3).sum())}
    print(json.dumps(info))


# ------------------------------------------------------------------------------------------ driver side


def run_worker(kind: str, args: argparse.Namespace, root: Path, cache: Path, copies: int = 1) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--root", str(root), "--cache", str(cache),
               "--images", str(args.images), "--copies", str(copies), "--batches", str(args.batches),
               "--seed", str(args.seed), "--resize", str(args.resize), "--crop", str(args.crop),
               "--scaling" if args.scaling else "--no-scaling"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{kind} worker failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def measure(args: argparse.Namespace, say) -> dict:
    """Generate the files, build the caches, run the workers; the figures as one dict."""
    settings = bench_settings(args.resize, args.crop)
    runs: dict[str, list[dict]] = {"plain": [], "cache": [], "cache_scaled": []}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root, cache = Path(tmp) / "jpeg", Path(tmp) / "cache"
        start = time.perf_counter()
        files = make_files(root, args.images, args.seed, args.size, args.scaling)
        say(f"data: {args.images} JPEGs of {files['widths'][0]}-{files['widths'][1]} x "
            f"{files['heights'][0]}-{files['heights'][1]} px, quality {QUALITY}, {files['jpeg_kb'][0]:.0f}-"
            f"{files['jpeg_kb'][2]:.0f} KB (mean {files['jpeg_kb'][1]:.0f}), {CLASSES} classes, seed {args.seed} "
            f"(generated in {time.perf_counter() - start:.1f} s)")
        say(f"settings: reality_check for cub200: Resize({settings.resize}) shorter side, RandomResizedCrop("
            f"{settings.image_size}) scale {settings.crop_scale_min}-{settings.crop_scale_max} ratio "
            f"{settings.crop_ratio_min}-{settings.crop_ratio_max}, flip {settings.horizontal_flip}, "
            f"{settings.channel_order} 0-{settings.pixel_range:g}, mean {list(settings.per_channel('mean', 3))}, "
            f"std {list(settings.per_channel('std', 3))}")
        build = run_worker("build", args, root, cache)
        for b in build["builds"]:
            say(f"cache build: {b['images']} images in {b['seconds']:.2f} s = {b['images_per_s']:.0f} images/s "
                f"({build['workers']} decoding processes), pixels {b['pixels_bytes'] / MB:.0f} MB")
        # Interleaved, so that load from other processes on the machine hits every way alike.
        for rep in range(args.repeat):
            for kind, copies in [("plain", 1), ("cache", 1)] + ([("cache_scaled", SCALE)] if args.scaling else []):
                run = run_worker(kind.split("_")[0], args, root, cache, copies)
                runs[kind].append(run)
                say(f"  repeat {rep + 1} {kind:12s} N={run['dataset_images']:<6d} {run['images_per_s']:7.1f} images/s"
                    f"  peak {run['peak'] / MB:6.0f} MB (+{(run['peak'] - run['baseline']) / MB:4.0f} MB over "
                    f"{run['baseline'] / MB:.0f} MB before the first batch)")

    def figures(kind: str) -> dict:
        rs = runs[kind]
        worst = max(rs, key=lambda r: r["peak"])
        out = {"images": rs[0]["dataset_images"], "images_per_s": statistics.median(r["images_per_s"] for r in rs),
               "images_per_s_runs": [r["images_per_s"] for r in rs], "peak_rss_bytes": worst["peak"],
               "peak_increase_bytes": max(r["peak"] - r["baseline"] for r in rs), "peak_how": worst["peak_how"],
               "ru_maxrss_bytes": max(r["ru_maxrss"] for r in rs), "touched_images": rs[0]["touched_images"]}
        if "cache_rss" in worst:
            out |= {"cache_rss_bytes": worst["cache_rss"], "peak_less_cache_bytes": worst["peak"] - worst["cache_rss"],
                    "pixels_bytes": worst["pixels_bytes"], "touched_bytes": worst["touched_bytes"]}
        return out

    result = {
        "images": args.images, "batches": args.batches, "batch_size": BATCH_SIZE, "warmup": WARMUP,
        "repeat": args.repeat, "seed": args.seed, "threads": runs["plain"][0]["threads"], "files": files,
        "settings": {"resize": settings.resize, "crop": settings.image_size},
        "build": {"images_per_s": build["builds"][0]["images_per_s"], "seconds": build["builds"][0]["seconds"],
                  "workers": build["workers"], "pixels_bytes": build["builds"][0]["pixels_bytes"]},
        "plain": figures("plain"), "cache": figures("cache"),
        "same_batches": len({r["checksum"] for r in runs["plain"] + runs["cache"]}) == 1,
        "batch_shape": runs["plain"][0]["shape"],
    }
    result["ratio"] = result["cache"]["images_per_s"] / result["plain"]["images_per_s"]
    result["target_speedup"] = TARGET_SPEEDUP
    result["speedup_met"] = result["ratio"] >= TARGET_SPEEDUP
    if args.scaling:
        scaled = figures("cache_scaled")
        growth = scaled["peak_less_cache_bytes"] - result["cache"]["peak_less_cache_bytes"]
        result["scaling"] = {"factor": SCALE, "build_images_per_s": build["builds"][1]["images_per_s"],
                             "small": result["cache"], "large": scaled, "peak_growth_bytes": scaled["peak_rss_bytes"]
                             - result["cache"]["peak_rss_bytes"], "peak_less_cache_growth_bytes": growth,
                             "target_growth_bytes": TARGET_PEAK_GROWTH_BYTES,
                             "met": growth < TARGET_PEAK_GROWTH_BYTES}
    return result


def report(result: dict, say) -> None:
    plain, cache = result["plain"], result["cache"]
    say()
    say(f"Each way: a fresh process, torch with {result['threads']} thread, {result['warmup']} warm-up batches, then "
        f"{result['batches']} timed batches of {result['batch_size']} (only train_batch timed), "
        f"float {result['batch_shape']}.")
    say(f"Images/s: median of {result['repeat']} (runs in brackets). Peak RSS: the worker's own ({plain['peak_how']}, "
        "torch's libraries included); +: over its RSS just before the first batch. The largest of the repeats.")
    names = {"plain": "plain: PIL decode + Resize each time", "cache": "cache: memory-mapped decoded cache"}
    for kind, fig in (("plain", plain), ("cache", cache)):
        each = ", ".join(f"{v:.0f}" for v in fig["images_per_s_runs"])
        say(f"  {names[kind]:38s} {fig['images_per_s']:7.1f} images/s ({each})  peak {fig['peak_rss_bytes'] / MB:6.0f}"
            f" MB (+{fig['peak_increase_bytes'] / MB:.0f} MB)")
    say(f"  cache build (once per dataset version)  {result['build']['images_per_s']:7.1f} images/s "
        f"({result['build']['workers']} decoding processes)")
    say(f"  batches identical both ways (crc32 of every timed batch): {'yes' if result['same_batches'] else 'NO'}")
    say(f"  speedup cache / plain = {result['ratio']:.2f}x  (target: at least {TARGET_SPEEDUP:g}x)  "
        f"{verdict(result['speedup_met'])}")
    if "scaling" not in result:
        return
    scaling = result["scaling"]
    say()
    say(f"Cache way's peak memory against the dataset's size ({scaling['factor']}x: every file listed "
        f"{scaling['factor']} times, the cache {scaling['factor']}x larger; same number of batches):")
    for fig in (scaling["small"], scaling["large"]):
        say(f"  N={fig['images']:<6d} peak {fig['peak_rss_bytes'] / MB:6.0f} MB = cache pages mapped "
            f"{fig['cache_rss_bytes'] / MB:4.0f} MB (of a {fig['pixels_bytes'] / MB:.0f} MB file; the "
            f"{fig['touched_images']} images the batches drew hold {fig['touched_bytes'] / MB:.0f} MB) + the rest "
            f"{fig['peak_less_cache_bytes'] / MB:6.0f} MB  ({fig['images_per_s']:.0f} images/s)")
    say(f"  peak growth N -> {scaling['factor']}N: {scaling['peak_growth_bytes'] / MB:+.0f} MB in all; "
        f"{scaling['peak_less_cache_growth_bytes'] / MB:+.0f} MB besides the cache's pages "
        f"(target: under {TARGET_PEAK_GROWTH_BYTES / MB:.0f} MB)  {verdict(scaling['met'])}")
    say("    Only the pages of the images drawn are paged in, so the cache's share is bounded by the batches "
        "drawn,\n    not by N; it grows here only where more distinct images are drawn. They are clean file "
        "pages: they\n    count in RSS but the kernel drops them under memory pressure instead of swapping.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="distinct JPEG files")
    parser.add_argument("--batches", type=int, default=40, help="timed batches of 32 per run")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also run the cache way on {SCALE}x the images (default: on)")
    parser.add_argument("--size", type=int, default=500, help="the images' largest side in px (CUB: 500)")
    parser.add_argument("--resize", type=int, default=0, help="shorter side in the cache (default: the protocol's)")
    parser.add_argument("--crop", type=int, default=0, help="crop size (default: the protocol's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object (the rest to stderr)")
    parser.add_argument("--worker", choices=("build", *WAYS), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "build":
        build_worker(args)
        return
    if args.worker:
        timed_worker(args)
        return
    if args.images < BATCH_SIZE:
        parser.error(f"--images must be at least the batch size {BATCH_SIZE}, got {args.images}")
    for name in ("batches", "repeat", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    settings = bench_settings(args.resize, args.crop)
    if settings.resize < settings.image_size:
        parser.error(f"the resize ({settings.resize}) must be at least the crop ({settings.image_size})")

    out = sys.stderr if args.json else sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    result = measure(args, say)
    report(result, say)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmark the text path: the harness's embeddings against SentenceTransformer.encode, the cache build, training.

Compares, on the first N texts of the embedded wordnet set (datasets/wordnet/definitions.csv.gz), in one run
and one process, with torch on `--threads` threads (default 1) for every timing:
  encode  - the reference: `SentenceTransformer.encode(texts, batch_size=32, normalize_embeddings=True)` (its
            default batch; it batches by length), after one untimed warm-up call on a few texts;
  harness - for each trained_layers k of `--layers` (default 0,1), the whole way from the texts to the
            embeddings of an untrained network: `build_text_cache` into a fresh temporary folder (k = 0: the
            sentence embeddings, which encode gives it; k >= 1: each text's token states after layer 6 - k,
            only those layers run), then `harness.train.build_model` (TextNet: the last k layers, mean
            pooling, no head, normalisation) and `harness.train.embed` over every text. Each part is timed.
The ratio is harness texts/s over encode texts/s (target: at least TARGET_RATIO), each the best of `--repeat`
runs interleaved so that load from other processes hits every way alike; the parts are those of the best
run. The harness's embeddings must equal encode's to within TOLERANCE (max |difference| printed).

Training: `harness.train.train_fold` with batch_semi_hard (margin 0.2) on the cached features of the same
texts (the last VAL_CLASSES classes validate, the others train), under the text_quick protocol (or
tests/tiny_text.toml where harness/protocols/text_quick.toml does not exist yet; `--protocol` picks another),
its budget set to `--iterations`. Iterations/s is taken from two timed trainings of W and W + N iterations
(W = `--warmup`, after an untimed one of W): their difference is N iterations, without the set-up and the
one validation at the end that both have. Timings are printed, never asserted.

    python benchmarks/text.py [--texts 1024 --layers 0,1 --repeat 3 --iterations 200 --threads 1 --json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.0  # harness / encode texts per second: at least 1x
TOLERANCE = 1e-5  # max |harness - encode| over every coordinate of every embedding
REFERENCE_BATCH = 32  # SentenceTransformer.encode's default batch_size
WARMUP_TEXTS = 8  # the reference's untimed warm-up call
COMPARISON_PROTOCOL = ROOT / "tests" / "tiny_text.toml"  # float32, normalised: its [text] section is replaced
TRAINING_PROTOCOL = "text_quick"
FALLBACK_PROTOCOL = COMPARISON_PROTOCOL
LOSS, HPARAMS = "batch_semi_hard", {"margin": 0.2}
VAL_CLASSES = 2
SEED = 0


def verdict(ok: bool) -> str:
    return "meets target" if ok else "below target"


# ------------------------------------------------------------------------------------------ the texts


def wordnet_texts(n: int) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """The first n texts of the embedded set, their class positions 0..c-1 (file order) and class names."""
    from harness.text.data import read_text_table, wordnet_path

    table = read_text_table(wordnet_path(ROOT / "datasets"), name="wordnet", official=True, sort_classes=False)
    classes, labels = np.unique(table.labels[:n], return_inverse=True)
    return table.texts[:n], labels.astype(np.int64), tuple(table.class_names[c] for c in classes)


def text_set(features, texts, labels, class_names):
    import torch

    from harness.text.data import TextSet

    return TextSet("wordnet", f"bench-text-{len(texts)}", features, np.arange(len(texts)), torch.from_numpy(labels),
                   class_names, texts=texts)


# ------------------------------------------------------------------------------------------ the two ways


def run_encode(encoder, texts) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = encoder.encode(list(texts), batch_size=REFERENCE_BATCH, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    return time.perf_counter() - start, out


def run_harness(encoder, protocol, texts, labels, class_names, directory: Path) -> tuple[dict, np.ndarray, object]:
    """The harness's way from texts to embeddings, part by part: cache, network, embed."""
    import torch

    from harness.text.cache import build_text_cache
    from harness.train import build_model, embed

    start = time.perf_counter()
    features = build_text_cache(texts, model=encoder, directory=directory, trained_layers=protocol.text.trained_layers,
                                num_layers=encoder[0].auto_model.config.num_hidden_layers,
                                max_seq_length=protocol.text.max_seq_length, progress=False)
    cached = time.perf_counter()
    items = text_set(features, texts, labels, class_names)
    model = build_model(protocol, items, seed=SEED)
    built = time.perf_counter()
    out = embed(model, items, protocol, device=torch.device("cpu"))
    done = time.perf_counter()
    parts = {"seconds": done - start, "cache_seconds": cached - start, "network_seconds": built - cached,
             "embed_seconds": done - built}
    return parts, out, features


def comparison_protocol(k: int):
    from harness.protocol import load_protocol

    base = load_protocol(COMPARISON_PROTOCOL)
    return dataclasses.replace(base, text=dataclasses.replace(base.text, trained_layers=k, head_hidden=0,
                                                              max_seq_length=0))


# ------------------------------------------------------------------------------------------ training


def training_protocol(choice: str | None):
    """(protocol, where it came from): `choice`, else text_quick, else tests/tiny_text.toml."""
    from harness.protocol import PROTOCOL_DIR, load_protocol

    if choice:
        return load_protocol(choice, dataset="wordnet"), choice
    if (PROTOCOL_DIR / f"{TRAINING_PROTOCOL}.toml").is_file():
        return load_protocol(TRAINING_PROTOCOL, dataset="wordnet"), TRAINING_PROTOCOL
    return (load_protocol(FALLBACK_PROTOCOL, dataset="wordnet"),
            f"{FALLBACK_PROTOCOL.relative_to(ROOT)} ({TRAINING_PROTOCOL}.toml not found in harness/protocols)")


def classes_needed(protocol) -> int:
    batch = protocol.batch
    return 2 if batch.sampler == "group_by_label" else batch.batch_size // batch.m_per_class


def measure_training(args, protocol, source: str, items, say) -> dict:
    import torch

    from harness.train import train_fold

    classes = items.num_classes
    train_set = items.subset(range(classes - VAL_CLASSES))
    val_set = items.subset(range(classes - VAL_CLASSES, classes))

    def run(iterations: int) -> float:
        budget = dataclasses.replace(protocol.budget, max_iterations=iterations, validation_interval=iterations + 1)
        start = time.perf_counter()
        train_fold(protocol=dataclasses.replace(protocol, budget=budget), loss_name=LOSS, hparams=dict(HPARAMS),
                   train_set=train_set, val_set=val_set, seed=SEED, device=torch.device("cpu"))
        return time.perf_counter() - start

    run(args.warmup)  # untimed: first calls, allocator
    short = run(args.warmup)
    long = run(args.warmup + args.iterations)
    seconds = max(long - short, 1e-9)
    batch = protocol.batch.batch_size
    result = {"protocol": protocol.name, "protocol_source": source, "protocol_hash": protocol.short_hash,
              "loss": LOSS, "hparams": HPARAMS, "trained_layers": protocol.text.trained_layers,
              "head_hidden": protocol.text.head_hidden, "batch_size": batch, "sampler": protocol.batch.sampler,
              "iterations": args.iterations, "warmup": args.warmup, "train_texts": len(train_set),
              "train_classes": classes - VAL_CLASSES, "val_texts": len(val_set), "val_classes": VAL_CLASSES,
              "seconds": seconds, "short_run_seconds": short, "long_run_seconds": long,
              "iterations_per_s": args.iterations / seconds, "texts_per_s": args.iterations * batch / seconds,
              "whole_run_iterations_per_s": (args.warmup + args.iterations) / long}
    say(f"  training: {args.warmup} + {args.iterations} iterations in {long:.2f} s, {args.warmup} in {short:.2f} s "
        f"(set-up and one validation in both)")
    return result


# ------------------------------------------------------------------------------------------ the run


def measure(args, say) -> dict:
    import sentence_transformers
    import torch
    import transformers

    from harness.text.cache import build_text_cache
    from harness.text.encoder import load_encoder

    torch.set_num_threads(args.threads)
    train_protocol, source = training_protocol(args.protocol)
    if train_protocol.input.kind != "text":
        raise SystemExit(f"protocol {train_protocol.name} is for {train_protocol.input.kind}, not text")
    texts, labels, class_names = wordnet_texts(args.texts)
    needed = classes_needed(train_protocol) + VAL_CLASSES
    if len(class_names) < needed:
        raise SystemExit(f"the first {args.texts} texts hold {len(class_names)} classes; training under "
                         f"{train_protocol.name} needs {needed} ({VAL_CLASSES} for validation): give more --texts")

    encoder_name = comparison_protocol(0).text.encoder
    encoder = load_encoder(encoder_name)  # loaded once, untimed: both ways use this very model
    num_layers = encoder[0].auto_model.config.num_hidden_layers
    for k in args.layers:
        if not 0 <= k <= num_layers:
            raise SystemExit(f"--layers: {k} is not in 0..{num_layers} (the encoder's layers)")
    tokens = np.array([len(ids) for ids in encoder.tokenizer(list(texts), truncation=True,
                                                             max_length=encoder.max_seq_length)["input_ids"]])
    result = {
        "texts": len(texts), "classes": len(class_names), "tokens": [int(tokens.min()), float(tokens.mean()),
                                                                    int(tokens.max())],
        "encoder": encoder_name, "encoder_layers": num_layers, "threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "reference_batch_size": REFERENCE_BATCH, "target_ratio": TARGET_RATIO, "tolerance": TOLERANCE,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
    }
    say(f"texts: the first {len(texts)} of datasets/wordnet/definitions.csv.gz ({len(class_names)} classes; "
        f"{tokens.min()}-{tokens.max()} tokens, mean {tokens.mean():.1f}), encoder {encoder_name} ({num_layers} "
        f"layers), torch {torch.__version__} on {result['threads']} thread(s), sentence-transformers "
        f"{sentence_transformers.__version__}, one process")

    run_encode(encoder, texts[:WARMUP_TEXTS])  # the reference's warm-up
    encode_runs: list[float] = []
    harness_runs: dict[int, list[dict]] = {k: [] for k in args.layers}
    reference = None
    diffs: dict[int, float] = {}
    kept: dict[int, tuple[object, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        for rep in range(args.repeat):
            seconds, out = run_encode(encoder, texts)
            reference = out if reference is None else reference
            encode_runs.append(seconds)
            say(f"  repeat {rep + 1}  encode       {len(texts) / seconds:8.1f} texts/s ({seconds:.2f} s)")
            for k in args.layers:
                directory = Path(tmp) / f"k{k}-r{rep}"
                parts, out, features = run_harness(encoder, comparison_protocol(k), texts, labels, class_names,
                                                   directory)
                harness_runs[k].append(parts)
                diffs[k] = max(diffs.get(k, 0.0), float(np.abs(out - reference).max()))
                kept[k] = (features, directory)
                say(f"  repeat {rep + 1}  harness k={k}  {len(texts) / parts['seconds']:8.1f} texts/s "
                    f"({parts['seconds']:.2f} s: cache {parts['cache_seconds']:.2f} s, network "
                    f"{parts['network_seconds']:.2f} s, embed {parts['embed_seconds']:.2f} s)")

        best = min(encode_runs)
        result["dimension"] = int(reference.shape[1])
        result["reference"] = {"seconds": best, "texts_per_s": len(texts) / best,
                               "texts_per_s_runs": [len(texts) / s for s in encode_runs]}
        result["harness"] = []
        for k in args.layers:
            fastest = min(harness_runs[k], key=lambda p: p["seconds"])
            tps = len(texts) / fastest["seconds"]
            result["harness"].append({
                "trained_layers": k, **fastest, "texts_per_s": tps,
                "texts_per_s_runs": [len(texts) / p["seconds"] for p in harness_runs[k]],
                "cache_texts_per_s": len(texts) / fastest["cache_seconds"],
                "embed_texts_per_s": len(texts) / (fastest["network_seconds"] + fastest["embed_seconds"]),
                "ratio": tps / result["reference"]["texts_per_s"], "meets_target":
                tps / result["reference"]["texts_per_s"] >= TARGET_RATIO,
                "max_abs_diff": diffs[k], "same": diffs[k] <= TOLERANCE})

        k = train_protocol.text.trained_layers
        text = train_protocol.text
        if k in kept and text.max_seq_length == 0 and text.encoder == encoder_name:  # the cache is the same
            features = kept[k][0]
        else:
            trained = load_encoder(train_protocol.text.encoder)
            features = build_text_cache(texts, model=trained, directory=Path(tmp) / "training", trained_layers=k,
                                        num_layers=trained[0].auto_model.config.num_hidden_layers,
                                        max_seq_length=train_protocol.text.max_seq_length, progress=False)
        items = text_set(features, texts, labels, class_names)
        result["training"] = measure_training(args, train_protocol, source, items, say)
    return result


def report(result: dict, say) -> None:
    n, ref = result["texts"], result["reference"]
    say()
    say(f"Texts per second, {n} texts, best of {result['repeat']} (runs in brackets), torch on {result['threads']} "
        f"thread(s) for every timing; each harness run builds its cache afresh in a new temporary folder:")
    each = ", ".join(f"{v:.0f}" for v in ref["texts_per_s_runs"])
    say(f"  encode: SentenceTransformer.encode(batch_size={result['reference_batch_size']}, "
        f"normalize_embeddings=True)  {ref['texts_per_s']:8.1f} texts/s ({each})")
    for h in result["harness"]:
        each = ", ".join(f"{v:.0f}" for v in h["texts_per_s_runs"])
        say(f"  harness k={h['trained_layers']}: build_text_cache + TextNet + embed  {h['texts_per_s']:8.1f} texts/s "
            f"({each})")
        say(f"      cache build {h['cache_texts_per_s']:8.1f} texts/s ({h['cache_seconds']:.2f} s); network "
            f"{h['network_seconds']:.2f} s; embed {h['embed_seconds']:.2f} s "
            f"(network + embed {h['embed_texts_per_s']:.0f} texts/s)")
        say(f"      max |harness - encode| = {h['max_abs_diff']:.2e} (tolerance {result['tolerance']:g}): "
            f"{'equal' if h['same'] else 'DIFFERENT'}")
        say(f"      ratio harness / encode = {h['ratio']:.3f}x  (target: at least {result['target_ratio']:.1f}x)  "
            f"{verdict(h['meets_target'])}")
    t = result["training"]
    say()
    say(f"Training: train_fold, {t['loss']} {t['hparams']}, protocol {t['protocol']} ({t['protocol_hash']}) from "
        f"{t['protocol_source']}: trained_layers {t['trained_layers']}, head_hidden {t['head_hidden']}, batch "
        f"{t['batch_size']} ({t['sampler']}), on cached features of {t['train_texts']} texts in {t['train_classes']} "
        f"classes (validation: {t['val_texts']} texts in {t['val_classes']} other classes, once at the end)")
    say(f"  {t['iterations_per_s']:8.1f} iterations/s = {t['texts_per_s']:.0f} texts/s  ({t['iterations']} "
        f"iterations in {t['seconds']:.2f} s, the difference of two trainings; {t['whole_run_iterations_per_s']:.1f} "
        f"iterations/s with set-up and validation)")


def parse_layers(text: str) -> list[int]:
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("give at least one trained_layers value")
    return list(dict.fromkeys(layers))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1024, help="the first N texts of the wordnet set")
    parser.add_argument("--layers", type=parse_layers, default=[0, 1], help="trained_layers values (default 0,1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each way (the best counts)")
    parser.add_argument("--iterations", type=int, default=200, help="timed training iterations")
    parser.add_argument("--warmup", type=int, default=10, help="training iterations of the short runs")
    parser.add_argument("--protocol", default=None,
                        help=f"training protocol, name or path (default: {TRAINING_PROTOCOL}, else "
                             f"{FALLBACK_PROTOCOL.relative_to(ROOT)})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every timing (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object (the rest to stderr)")
    args = parser.parse_args(argv)
    for name in ("texts", "repeat", "iterations", "warmup", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    out = sys.stderr if args.json else sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    result = measure(args, say)
    report(result, say)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

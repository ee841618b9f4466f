"""The transformers zoo counted on CPU, meta and fake tensors: ``python tests/counting/zoo.py``.

Every config type with a base model, and its first head (LM, classification,
...), is built from its default config shrunk to 2 layers and hidden size 64
with random weights, then counted six ways: its forward and a train step
(backward of the sum of its floating outputs), each on CPU, and through
``pytest_flops.count`` on meta and on fake stand-ins. A stand-in count passes
when its :class:`~pytest_flops.Measurement` (totals, rows, per-op counts,
unsupported ops) equals the CPU's. A count that routed experts by the balanced
convention (its notes say so) must equal the CPU's run routed the same way
(``BalancedRouting``), and the CPU's own routing in its total.

Results go to a JSON-lines file one job at a time (``--out``), so an
interrupted sweep resumes where it stopped; ``--table`` prints the Markdown
table of docs/zoo.md from that file. ``--only`` runs some config types;
``--subset`` the CI's fixed selection, one model per architecture
(tests/counting/test_zoo.py).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils._pytree import tree_leaves

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.balanced_routing import BALANCED_ROUTING, BalancedRouting

# The CI's architectures: dense decoders, MoE, MLA, SSMs and hybrids, encoders,
# encoder-decoders, vision, audio and multimodal models. ViTMAE, RADIO, YOLOS and GIT
# for bytes that stand-ins once counted apart (a number set into a mask, a fake
# view's strides, the .to() of a stand-in to a kept tensor's device).
SUBSET = (
    "llama", "qwen3", "gemma3_text", "phi3", "gpt2", "gpt_neox", "opt", "bloom", "falcon",
    "mixtral", "qwen3_moe", "qwen2_moe", "olmoe", "granitemoe", "deepseek_v3",
    "switch_transformers",
    "mamba", "falcon_mamba", "jamba",
    "bert", "roberta", "modernbert", "electra", "rembert",
    "t5", "bart", "pegasus", "marian",
    "vit", "deit", "beit", "levit", "segformer", "convnext", "dinov3_vit", "vit_mae", "radio",
    "yolos",
    "whisper", "wav2vec2", "hubert",
    "clip", "siglip", "git",
)  # fmt: skip

HEADS = (
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_CTC_MAPPING_NAMES",
)

# attribute -> the small value it gets, wherever a config (or sub-config) has it
SMALL = {
    "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "n_layers": 2,
    "encoder_layers": 2, "decoder_layers": 2, "num_encoder_layers": 2,
    "num_decoder_layers": 2, "text_layers": 2, "vision_layers": 2,
    "hidden_size": 64, "d_model": 64, "n_embd": 64, "dim": 64, "embed_dim": 64,
    "intermediate_size": 128, "d_ff": 128, "ffn_dim": 128, "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128, "n_inner": 128, "hidden_dim": 128,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "num_heads": 4, "head_dim": 16, "d_kv": 16,
    "num_key_value_heads": 2,
    "num_local_experts": 4, "num_experts": 4, "n_routed_experts": 4,
    "num_experts_per_tok": 2, "moe_intermediate_size": 32, "n_group": 1, "topk_group": 1,
    "kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
    "v_head_dim": 16, "first_k_dense_replace": 1,
    "max_position_embeddings": 128, "vocab_size": 256,
    "attn_layer_offset": 1, "attn_layer_period": 2,  # hybrids keep an attention layer
}  # fmt: skip

BATCH, SEQUENCE = 2, 16


@dataclass(kw_only=True)
class Row:
    """One model and head: what each run gave ("equal", "ok", "differs: ...", "error: ...")."""

    config_type: str
    model: str
    built: str = ""
    cpu: str = ""
    meta: str = ""
    fake: str = ""
    train_cpu: str = ""
    train_meta: str = ""
    train_fake: str = ""
    unsupported: list[str] = field(default_factory=list)
    seconds: float = 0.0


def jobs(only: set[str] | None = None) -> Iterator[tuple[str, str]]:
    """(config type, model class name) for every base model and its first head."""
    from transformers.models.auto import modeling_auto

    for config_type, base in modeling_auto.MODEL_MAPPING_NAMES.items():
        if only is not None and config_type not in only:
            continue
        yield config_type, _first(base)
        for mapping in HEADS:
            head = getattr(modeling_auto, mapping).get(config_type)
            if head:
                yield config_type, _first(head)
                break


def subset_jobs() -> list[tuple[str, str]]:
    """One job per architecture of ``SUBSET``: its head where it has one, else its base."""
    chosen: dict[str, str] = {}
    for config_type, model_name in jobs(set(SUBSET)):
        chosen[config_type] = model_name  # a head comes after its base
    return sorted(chosen.items())


def _first(name: str | Sequence[str]) -> str:
    return name if isinstance(name, str) else name[0]


def small_config(config_type: str) -> Any:
    from transformers import AutoConfig, PretrainedConfig

    config = AutoConfig.for_model(config_type)
    configs = [config]
    while configs:
        current = configs.pop()
        for key, value in list(vars(current).items()):
            if isinstance(value, PretrainedConfig):
                configs.append(value)
            elif key in SMALL and isinstance(value, int) and not isinstance(value, bool):
                setattr(current, key, min(value, SMALL[key]))
        if isinstance(getattr(current, "qk_rope_head_dim", None), int):  # MLA
            current.head_dim = current.qk_rope_head_dim  # the rotary width
            current.num_key_value_heads = current.num_attention_heads
        vocab = getattr(current, "vocab_size", None)
        for key, value in list(vars(current).items()):
            if key.endswith("token_id") and isinstance(value, int) and vocab and value >= vocab:
                setattr(current, key, vocab - 1)
    return config


def build(config_type: str, model_name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    import transformers

    torch.manual_seed(0)
    config = small_config(config_type)
    model = getattr(transformers, model_name)._from_config(config).eval()
    return model, model_inputs(model, config)


def model_inputs(model: torch.nn.Module, config: Any) -> dict[str, Any]:
    name = getattr(model, "main_input_name", "input_ids")
    text = getattr(config, "text_config", None) or config
    vision = getattr(config, "vision_config", None) or config
    inputs: dict[str, Any] = {}
    if name == "input_ids" or name == "inputs_embeds":
        vocab = min(getattr(text, "vocab_size", 256) or 256, 256)
        inputs["input_ids"] = torch.randint(3, vocab, (BATCH, SEQUENCE))
        inputs["attention_mask"] = torch.ones(BATCH, SEQUENCE, dtype=torch.long)
        inputs["attention_mask"][1, -4:] = 0  # padding: masks are built from values
        if getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = inputs["input_ids"][:, :8]
    elif name == "pixel_values":
        size = getattr(vision, "image_size", 224)
        size = size if isinstance(size, int) else size[0] if isinstance(size, list) else 224
        channels = getattr(vision, "num_channels", 3)
        inputs["pixel_values"] = torch.randn(BATCH, channels, size, size)
    elif name == "input_values":
        inputs["input_values"] = torch.randn(BATCH, 16_000)
    elif name == "input_features":
        bins = getattr(config, "num_mel_bins", 80)
        frames = 2 * getattr(config, "max_source_positions", 1500)
        inputs["input_features"] = torch.randn(BATCH, bins, frames)
        if getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = torch.randint(3, 100, (BATCH, 8))
    else:
        raise ValueError(f"no inputs for main input {name!r}")
    return inputs


def forward(model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
    return model(**inputs)


def train_step(model: torch.nn.Module, inputs: dict[str, Any]) -> None:
    outputs = model(**inputs)
    leaves = outputs.to_tuple() if hasattr(outputs, "to_tuple") else outputs
    floats = [
        leaf
        for leaf in tree_leaves(leaves)
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.requires_grad
    ]
    sum(leaf.float().sum() for leaf in floats).backward()  # type: ignore[union-attr]


def on_cpu(
    step: Callable[..., Any],
    model: torch.nn.Module,
    inputs: dict[str, Any],
    *,
    balanced: bool = False,
) -> Measurement:
    """The count of a real run of ``model`` as built (``cold``); with ``balanced``,
    routed as stand-ins are."""
    routing: AbstractContextManager[Any] = BalancedRouting() if balanced else nullcontext()
    model = cold(model)
    with routing, FlopCounterMode(display=False) as counter:
        step(model, inputs)
    return counter.to_measurement()


def compare(expected: Measurement, got: Measurement, balanced: Callable[[], Measurement]) -> str:
    """ "equal" when ``got`` (totals, rows, ops, bytes accessed) equals ``expected``, the
    CPU's count; for a count that routed by the convention, the CPU's count routed the
    same way (``balanced()``), its total equal to the CPU's own routing's."""
    if BALANCED_ROUTING in got.notes and got.total == expected.total:
        expected = balanced()
    if got == expected:  # notes aside
        return "equal"
    if got.without_bytes() == expected.without_bytes():
        moved = {
            op: f"{got.bytes_by_op.get(op, 0):,} (cpu {expected.bytes_by_op.get(op, 0):,})"
            for op in got.bytes_by_op.keys() | expected.bytes_by_op.keys()
            if got.bytes_by_op.get(op) != expected.bytes_by_op.get(op)
        }
        return f"differs: bytes accessed {dict(sorted(moved.items()))}"
    return (
        f"differs: total {got.total:,} (cpu {expected.total:,}),"
        f" ops {dict(got.by_op)} (cpu {dict(expected.by_op)})"
    )


def cold(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` as built, with its modeling module's lru caches emptied: every
    run starts from the state of a fresh process. A model that caches work (LeViT's
    attention biases per device, DINOv3's patch coordinates in an lru cache keyed by
    device, D-FINE's sinusoidal position embeddings in a static method's) runs fewer ops
    once its cache is filled, on any device."""
    for value in module_functions(sys.modules[type(model).__module__]):
        for held in (value, *closure_values(value)):
            if callable(getattr(held, "cache_clear", None)):
                held.cache_clear()
    return copy.deepcopy(model)


def module_functions(module: object) -> Iterator[Any]:
    """A module's globals, and the methods of the classes it defines (static and class
    methods unwrapped): where a modeling module's lru caches live."""
    for value in vars(module).values():
        yield value
        if isinstance(value, type) and value.__module__ == getattr(module, "__name__", None):
            for attribute in vars(value).values():
                yield getattr(attribute, "__func__", attribute)


def closure_values(value: object) -> Iterator[object]:
    """What a function's closure holds: transformers wraps some lru caches in a function."""
    for cell in getattr(value, "__closure__", None) or ():
        try:
            yield cell.cell_contents
        except ValueError:  # a closure variable not yet assigned
            continue


def failure(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"error: {type(error).__name__}: {lines[0][:300] if lines else ''}"


class JobTimeout(Exception):
    pass


def run_job(config_type: str, model_name: str, timeout: int) -> Row:
    row = Row(config_type=config_type, model=model_name)
    start = time.perf_counter()

    def expire(*_: object) -> None:
        raise JobTimeout(f"over {timeout} s")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(timeout)
    try:
        try:
            model, inputs = build(config_type, model_name)
        except Exception as error:
            row.built = failure(error)
            return row
        row.built = "ok"
        for step, columns in (
            (forward, ("cpu", "meta", "fake")),
            (train_step, ("train_cpu", "train_meta", "train_fake")),
        ):
            try:
                expected = on_cpu(step, model, inputs)
            except Exception as error:
                setattr(row, columns[0], failure(error))
                continue
            routed = functools.partial(on_cpu, step, model, inputs, balanced=True)
            balanced = functools.cache(routed)
            setattr(row, columns[0], "ok")
            row.unsupported = sorted(set(row.unsupported) | set(expected.unsupported))
            for column, device in zip(columns[1:], ("meta", "fake"), strict=True):
                stand_in: Literal["meta", "fake"] = device  # type: ignore[assignment]
                try:
                    got = pytest_flops.count(step, cold(model), inputs, device=stand_in)
                    setattr(row, column, compare(expected, got, balanced))
                except Exception as error:
                    setattr(row, column, failure(error))
    except JobTimeout as error:
        row.seconds = time.perf_counter() - start
        for column in ("cpu", "meta", "fake", "train_cpu", "train_meta", "train_fake"):
            if not getattr(row, column):
                setattr(row, column, failure(error))
        return row
    finally:
        signal.alarm(0)
        row.seconds = time.perf_counter() - start
    return row


def sweep(out: Path, selected: list[tuple[str, str]], timeout: int, budget: float) -> None:
    done = {(row["config_type"], row["model"]) for row in read(out)}
    start = time.perf_counter()
    with out.open("a") as file:
        for config_type, model_name in selected:
            if (config_type, model_name) in done:
                continue
            if time.perf_counter() - start > budget:
                print(f"stopped after {budget:.0f} s: budget spent", file=sys.stderr)
                return
            try:
                row = run_job(config_type, model_name, timeout)
            except Exception:  # the sweep goes on; the row says what broke
                row = Row(config_type=config_type, model=model_name, built="error: sweep")
                traceback.print_exc()
            file.write(json.dumps(asdict(row)) + "\n")
            file.flush()
            print(f"{row.seconds:6.1f}s {config_type} {model_name}: {summary(row)}", flush=True)


def summary(row: Row | dict[str, Any]) -> str:
    data = asdict(row) if isinstance(row, Row) else row
    columns = ("built", "cpu", "meta", "fake", "train_cpu", "train_meta", "train_fake")
    return " ".join(f"{c}={data[c].split(':')[0] or '-'}" for c in columns)


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(rows: list[dict[str, Any]]) -> str:
    def cell(text: str) -> str:
        return text.split(":")[0] if text else "-"

    lines = [
        "| config | model | built | CPU | meta | fake | train CPU | train meta | train fake "
        "| unsupported on CPU | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [cell(row[c]) for c in ("built", "cpu", "meta", "fake")]
        cells += [cell(row[c]) for c in ("train_cpu", "train_meta", "train_fake")]
        unsupported = ", ".join(f"`{op}`" for op in row["unsupported"])
        lines.append(
            f"| {row['config_type']} | {row['model']} | {' | '.join(cells)} | {unsupported} "
            f"| {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def figures(rows: list[dict[str, Any]], total: int | None = None) -> str:
    """The sweep in numbers, as docs/zoo.md shows it: how each column came out of
    ``total`` jobs (all of them unless given), and every stand-in count not equal."""
    total = total or len(rows)

    def ok(column: str, value: str) -> int:
        return sum(row[column] == value for row in rows)

    lines = [
        f"Jobs done: {len(rows)} of {total}, "
        f"{sum(row['seconds'] for row in rows) / 60:.0f} minutes of model time.",
        "",
        "| | jobs |",
        "| --- | --- |",
        f"| built | {ok('built', 'ok')} of {len(rows)} |",
    ]
    for step, prefix in (("forward", ""), ("train step", "train_")):
        ran = ok(f"{prefix}cpu", "ok")
        lines.append(f"| {step} ran on CPU | {ran} |")
        lines += [
            f"| {step} on {device} equal to CPU | {ok(prefix + device, 'equal')} of {ran} |"
            for device in ("meta", "fake")
        ]
    lines += ["", "Where CPU ran and a stand-in count did not equal it:", ""]
    for row in rows:
        columns = ("meta", "fake", "train_meta", "train_fake")
        bad = [c for c in columns if row[c].startswith(("error", "differs"))]
        if bad:
            message = row[bad[0]][:200]
            lines.append(f"- `{row['config_type']}` {row['model']} ({', '.join(bad)}): {message}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("zoo.jsonl"))
    parser.add_argument("--only", nargs="*", help="config types (default: all)")
    parser.add_argument("--subset", action="store_true", help="the CI's SUBSET only")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per model")
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds in all")
    parser.add_argument("--table", action="store_true", help="print the table of --out")
    parser.add_argument("--figures", action="store_true", help="print the figures of --out")
    parser.add_argument("--of", type=int, help="--figures of a partial sweep: jobs in all")
    options = parser.parse_args()
    if options.table or options.figures:
        rows = read(options.out)
        print(table(rows) if options.table else figures(rows, options.of))
        return
    torch.set_num_threads(1)
    selected = subset_jobs() if options.subset else list(jobs(set(options.only or ()) or None))
    sweep(options.out, selected, options.timeout, options.budget)


if __name__ == "__main__":
    main()

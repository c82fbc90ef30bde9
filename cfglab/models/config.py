"""The one options object for every model variant (nanoGPT style: a dataclass, a comment per field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Literal, get_args

from cfglab.errors import CfglabError


class PE(str, Enum):
    """Position encodings of the paper (Allen-Zhu & Li, Part 1, section 5) plus the encoder contrast."""

    ABS = "abs"  # learned absolute position embeddings added to the token embeddings (GPT)
    REL = "rel"  # DeBERTa disentangled relative attention (GPT_rel)
    ROT = "rot"  # rotary embeddings on queries and keys (GPT_rot)
    POS = "pos"  # attention weights a learned function of the distance only, no q/k (GPT_pos)
    UNI = "uni"  # fixed uniform attention over 2^h - 1 tokens for head h, no q/k (GPT_uni)
    MLM = "mlm"  # encoder-only masked LM, bidirectional, position encoding from `mlm_pe`


DECODER_PES: tuple[PE, ...] = (PE.ABS, PE.REL, PE.ROT, PE.POS, PE.UNI)
MlmPE = Literal["abs", "rel"]  # the encodings an mlm encoder can use
MLM_PES: tuple[PE, ...] = tuple(PE(name) for name in get_args(MlmPE))


@dataclass
class ModelConfig:
    vocab_size: int  # number of token ids, including BOS/EOS (and [MASK] for mlm)
    context: int = 256  # training window; abs position embeddings stop here
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual width d; head size is n_embd // n_head
    pe: PE | str = PE.ROT  # position encoding / attention variant: abs rel rot pos uni mlm
    mlm_pe: PE | str = PE.ABS  # position encoding of the mlm encoder: abs or rel
    dropout: float = 0.0  # dropout on attention probabilities and residual branches
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2 has them)
    max_rel: int | None = None  # rel: distances clipped to [-max_rel, max_rel - 1]; None: context
    rope_base: float = 10000.0  # rot: base of the rotary frequencies
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * n_embd
    tie_weights: bool = True  # share the token embedding with the output head (GPT-2 does)

    def __post_init__(self) -> None:
        self.pe = _as_pe(self.pe, "pe", tuple(PE))
        self.mlm_pe = _as_pe(self.mlm_pe, "mlm_pe", MLM_PES)
        if self.max_rel is None:  # DeBERTa's default span: the whole window, clipped only past it
            self.max_rel = self.context
        for name in (
            "vocab_size",
            "context",
            "n_layer",
            "n_head",
            "n_embd",
            "max_rel",
            "mlp_ratio",
        ):
            if getattr(self, name) < 1:
                raise CfglabError(f"model config: {name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise CfglabError(
                f"model config: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )
        if self.attention == PE.ROT and self.head_size % 2:
            raise CfglabError(f"model config: rot needs an even head size, got {self.head_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise CfglabError(f"model config: dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def attention(self) -> PE:
        """The attention variant the blocks use (mlm delegates to `mlm_pe`)."""
        return PE(self.mlm_pe) if self.pe == PE.MLM else PE(self.pe)

    @property
    def is_decoder(self) -> bool:
        return self.pe != PE.MLM

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (enums as their names)."""
        d = asdict(self)
        d["pe"], d["mlm_pe"] = PE(self.pe).value, PE(self.mlm_pe).value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise CfglabError(f"model config: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


def _as_pe(value: PE | str, field: str, allowed: tuple[PE, ...]) -> PE:
    try:
        pe = PE(value)
    except ValueError:
        pe = None
    if pe not in allowed:
        names = " ".join(p.value for p in allowed)
        raise CfglabError(f"model config: {field} must be one of {names}, got {value!r}")
    return pe

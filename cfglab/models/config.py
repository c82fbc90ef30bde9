"""The list of position encodings (`PE`, the registry every other module takes them from) and
the model's options (`ModelConfig`). No torch here: the CLI and the run directory read both."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cfglab.errors import CfglabError, format_validation_error


class PE(str, Enum):
    """Position encodings of the paper (Allen-Zhu & Li, Part 1, section 5) and the encoder."""

    ABS = "abs"  # learned absolute position embeddings added to the token embeddings (GPT)
    REL = "rel"  # DeBERTa disentangled relative attention (GPT_rel)
    ROT = "rot"  # rotary embeddings on queries and keys (GPT_rot)
    POS = "pos"  # attention weights a learned function of the distance only, no q/k (GPT_pos)
    UNI = "uni"  # fixed uniform attention over 2^h - 1 tokens for head h, no q/k (GPT_uni)
    NONE = "none"  # NoPE: softmax(q k^T) with no position signal; only the causal mask orders
    MLM = "mlm"  # encoder-only masked LM, bidirectional, position encoding from `mlm_pe`


DECODER_PES: tuple[PE, ...] = (PE.ABS, PE.REL, PE.ROT, PE.POS, PE.UNI, PE.NONE)
MlmPE = Literal["abs", "rel"]  # the encodings an mlm encoder can use
MLM_PES: tuple[PE, ...] = tuple(PE(name) for name in get_args(MlmPE))


class ModelConfig(BaseModel):
    """The one options object for every model variant, with the same names as GPT-2/nanoGPT.

    Built from a TrainConfig by `cfglab.runs.model_config_for`; every field a user sets is a
    TrainConfig field too. A bad value is a CfglabError naming the field.
    """

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(description="Token ids, including BOS/EOS (and [MASK] for mlm).")
    context: int = Field(256, description="Training window; abs position embeddings stop here.")
    n_layer: int = Field(4, description="Transformer blocks.")
    n_head: int = Field(4, description="Attention heads per block.")
    n_embd: int = Field(128, description="Residual width d; head size is n_embd // n_head.")
    pe: PE = Field(PE.ROT, description="Position encoding / attention variant.")
    mlm_pe: PE = Field(PE.ABS, description="Position encoding of the mlm encoder: abs or rel.")
    dropout: float = Field(0.0, description="Dropout on attention probabilities and residuals.")
    bias: bool = Field(True, description="Biases in Linear and LayerNorm layers (GPT-2 has them).")
    max_rel: int | None = Field(
        None, description="rel: distances clipped to [-max_rel, max_rel - 1]; None: the context."
    )
    rope_base: float = Field(10000.0, description="rot: base of the rotary frequencies.")
    rope_dim: int | None = Field(
        None, description="rot: features of each head that rotate (partial RoPE); None: all."
    )
    canon: str = Field("", description='Canon layers at places among "ABCD"; "": none.')
    canon_kernel: int = Field(4, description="Canon: taps of each causal depthwise convolution.")
    canon_residual: bool = Field(True, description="Canon: h + conv(h) (True) or conv(h).")
    bos_id: int | None = Field(
        None, description="Token id of BOS: Canon convolutions restart there; None: never."
    )
    mlp_ratio: int = Field(4, description="MLP hidden width = mlp_ratio * n_embd.")
    tie_weights: bool = Field(
        True, description="Share the token embedding with the output head (GPT-2 does)."
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise CfglabError(format_validation_error(err, "model config: invalid")) from None

    @field_validator("pe", mode="before")
    @classmethod
    def _known_pe(cls, value: Any) -> PE:
        return _as_pe(value, "pe", tuple(PE))

    @field_validator("mlm_pe", mode="before")
    @classmethod
    def _encoder_pe(cls, value: Any) -> PE:
        return _as_pe(value, "mlm_pe", MLM_PES)

    @field_validator("canon", mode="before")
    @classmethod
    def _canon_places(cls, value: Any) -> str:
        return canon_places(value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.max_rel is None:  # DeBERTa's default span: the whole window, clipped only past it
            self.max_rel = self.context
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.attention == PE.ROT and self.head_size % 2:
            raise ValueError(f"rot needs an even head size, got {self.head_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        self._check_rope_dim()
        if self.canon and self.pe == PE.MLM:
            raise ValueError(
                "canon layers are causal convolutions, defined for decoders; mlm takes canon ''"
            )
        if self.canon_kernel < 1:
            raise ValueError(f"canon_kernel must be >= 1, got {self.canon_kernel}")
        return self

    def _check_rope_dim(self) -> None:
        if self.rope_dim is None:
            return
        if self.attention != PE.ROT:
            raise ValueError(f"rope_dim applies to pe rot only (pe is {PE(self.pe).value})")
        if self.rope_dim % 2 or not 0 < self.rope_dim <= self.head_size:
            raise ValueError(
                f"rope_dim must be even and in [2, head size {self.head_size}], got {self.rope_dim}"
            )

    @property
    def rel_span(self) -> int:
        """rel's clipping distance k: `max_rel`, resolved to the context when not given."""
        return self.max_rel if self.max_rel is not None else self.context

    @property
    def rotary_dim(self) -> int:
        """rot: the features of each head that rotate (`rope_dim`, or all of them)."""
        return self.rope_dim if self.rope_dim is not None else self.head_size

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
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


_POSITIVE = ("vocab_size", "context", "n_layer", "n_head", "n_embd", "max_rel", "mlp_ratio")


CANON_PLACES = "ABCD"  # Part 4.1's four places of a Canon layer in a block


def canon_places(value: Any) -> str:
    """A subset of "ABCD" in canonical order ("" = no Canon layers); anything else is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f'canon must be a string of places among "ABCD", got {value!r}')
    text = value.strip().upper()
    bad = sorted(set(text) - set(CANON_PLACES))
    if bad or len(set(text)) != len(text):
        why = f"unknown place(s) {' '.join(bad)}" if bad else "a place repeats"
        raise ValueError(
            f'canon must be a subset of "ABCD" (A: before attention, B: on q/k/v, C: before '
            f'the MLP, D: in the MLP), e.g. "ABCD" or "AC", or "" for none; got {value!r} ({why})'
        )
    return "".join(p for p in CANON_PLACES if p in text)


def _as_pe(value: Any, field: str, allowed: tuple[PE, ...]) -> PE:
    try:
        pe = PE(value)
    except ValueError:
        pe = None
    if pe not in allowed:
        names = " ".join(p.value for p in allowed)
        raise ValueError(f"{field} must be one of {names}, got {value!r}")
    return pe

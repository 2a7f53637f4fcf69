"""BERT-style Transformer encoder with a sequence classifier (Devlin et al. 2019).

The tile-wise paper prunes a fine-tuned BERT-base (docs/tile_wise.md) and the
TASD paper uses it as a GEMM workload (docs/tasd.md). Post-LN layers as in the
original BERT: x = LN(x + Attn(x)); x = LN(x + FFN(x)), GELU (exact, erf) in
the FFN, LayerNorm epsilon 1e-12 (both fields, for checkpoints that differ),
then a tanh pooler on the [CLS] (first) token and a linear classifier.

Every GEMM with a weight is a 2-D Dense `[in, out]` built with the `dense`
field: attention `query`, `key`, `value`, `out` are [hidden, hidden] and are
reshaped to heads around them (so tile-wise pruning and the cost model see one
plain GEMM each), the FFN is `intermediate` [hidden, mlp_dim] and `output`
[mlp_dim, hidden], then `pooler` and `classifier`. Parameter paths are e.g.
`layer_3/attention/query/kernel`, `layer_3/intermediate/kernel`.

BERT-base (the defaults) has 109,482,240 parameters without the classifier.
`encode` returns the last hidden states [B, L, hidden] (no pooler, no
classifier), the output sentence-embedding models pool; `from_pretrained` in
`tasd_jax/models/pretrained.py` fills these modules from a Hugging Face BERT
checkpoint.
"""

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

_LN_EPSILON = 1e-12  # BERT's LayerNorm epsilon, the default of `layer_norm_eps`


class SelfAttention(nn.Module):
    """Multi-head self-attention with 2-D q/k/v/out projections.

    Attributes:
      num_heads: heads; must divide the hidden size.
      dropout_rate: dropout on the attention probabilities.
      dense: constructor of linear layers, called as `dense(features, name=...)`.
    """

    num_heads: int
    dropout_rate: float
    dense: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x: jax.Array, attention_mask: jax.Array, train: bool) -> jax.Array:
        """x: [B, L, hidden]; attention_mask: [B, L] bool, True = attend to it.

        Returns [B, L, hidden].
        """
        batch, length, hidden = x.shape
        head_dim = hidden // self.num_heads

        def heads(name: str) -> jax.Array:
            # [B, L, hidden] -> [B, heads, L, head_dim]
            y = self.dense(hidden, name=name)(x).reshape(batch, length, self.num_heads, head_dim)
            return y.transpose(0, 2, 1, 3)

        # Batch and heads lead both products: XLA on CPU runs batch-leading
        # matmuls at BLAS speed, while einsums with the heads axis in the
        # middle ("bqhd,bkhd->bhqk") took 2.4x as long; the results agree to
        # float rounding (bit-equal at BERT-base's shapes, docs/measurements.md).
        query, key, value = heads("query"), heads("key"), heads("value")
        with jax.named_scope("scores"):  # the GEMM's name in `cost.gemms_of`
            scores = jnp.matmul(query, key.swapaxes(-1, -2)) / jnp.sqrt(
                jnp.asarray(head_dim, x.dtype)
            )  # [B, heads, L, L]
        # Masked keys get the dtype's lowest value, so softmax gives them 0 weight.
        scores = jnp.where(attention_mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
        probs = nn.softmax(scores, axis=-1)
        probs = nn.Dropout(self.dropout_rate, deterministic=not train)(probs)
        with jax.named_scope("context"):
            context = jnp.matmul(probs, value).transpose(0, 2, 1, 3)  # [B, L, heads, head_dim]
        return self.dense(hidden, name="out")(context.reshape(batch, length, hidden))


class EncoderLayer(nn.Module):
    """Post-LN Transformer layer: attention and GELU FFN, each residual + LN.

    Attributes:
      num_heads: attention heads.
      mlp_dim: FFN inner width.
      dropout_rate: dropout on attention probabilities and sub-layer outputs.
      dense: constructor of linear layers, called as `dense(features, name=...)`.
      layer_norm_eps: LayerNorm epsilon.
      gelu_approximate: tanh GELU instead of the exact (erf) one.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float
    dense: Callable[..., nn.Module]
    layer_norm_eps: float = _LN_EPSILON
    gelu_approximate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, attention_mask: jax.Array, train: bool) -> jax.Array:
        """x: [B, L, hidden], attention_mask: [B, L] bool -> [B, L, hidden]."""
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        y = SelfAttention(self.num_heads, self.dropout_rate, self.dense, name="attention")(
            x, attention_mask, train
        )
        x = nn.LayerNorm(epsilon=self.layer_norm_eps, name="attention_ln")(x + dropout(y))
        y = nn.gelu(
            self.dense(self.mlp_dim, name="intermediate")(x), approximate=self.gelu_approximate
        )
        y = self.dense(x.shape[-1], name="output")(y)
        return nn.LayerNorm(epsilon=self.layer_norm_eps, name="output_ln")(x + dropout(y))


class BertEncoder(nn.Module):
    """BERT encoder + pooler + classifier: token ids [B, L] -> logits [B, classes].

    Attributes:
      vocab_size: word-piece vocabulary size.
      hidden: model width; a multiple of num_heads.
      num_layers: encoder layers, named `layer_0` ... .
      num_heads: attention heads.
      mlp_dim: FFN inner width.
      max_len: number of learned positions; inputs may be at most this long.
      type_vocab_size: number of token types (segments).
      num_classes: width of the `classifier` head.
      dropout_rate: dropout on embeddings, attention probabilities, sub-layer
        outputs and the pooled vector (rng name "dropout", only when train=True).
      dense: constructor of linear layers, called as `dense(features, name=...)`.
      layer_norm_eps: epsilon of every LayerNorm.
      gelu_approximate: tanh GELU in the FFN instead of the exact (erf) one.
    """

    vocab_size: int = 30522
    hidden: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    max_len: int = 512
    type_vocab_size: int = 2
    num_classes: int = 2
    dropout_rate: float = 0.1
    dense: Callable[..., nn.Module] = nn.Dense
    layer_norm_eps: float = _LN_EPSILON
    gelu_approximate: bool = False

    def encode(
        self,
        input_ids: jax.Array,
        token_type_ids: Optional[jax.Array] = None,
        attention_mask: Optional[jax.Array] = None,
        train: bool = False,
    ) -> jax.Array:
        """The last hidden states: `model.apply(variables, ids, method="encode")`.

        Arguments as for `__call__`; the pooler and classifier are not used
        (nor needed in `variables`).

        Returns:
          [B, L, hidden] float hidden states of the last layer, padding
          positions included.
        """
        return self(input_ids, token_type_ids, attention_mask, train, hidden_states=True)

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: Optional[jax.Array] = None,
        attention_mask: Optional[jax.Array] = None,
        train: bool = False,
        *,
        hidden_states: bool = False,
    ) -> jax.Array:
        """Classifies token sequences.

        Args:
          input_ids: [B, L] integer word-piece ids, L <= max_len.
          token_type_ids: [B, L] integer segment ids; zeros when omitted.
          attention_mask: [B, L], nonzero/True for real tokens, 0 for padding;
            all ones when omitted.
          train: enables dropout (needs the "dropout" rng).
          hidden_states: return the last layer's [B, L, hidden] states before
            the pooler (what `encode` does).

        Returns:
          logits [B, num_classes], or [B, L, hidden] with hidden_states=True.
        """
        self._check(input_ids, token_type_ids, attention_mask)
        batch, length = input_ids.shape
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = jnp.ones((batch, length), bool)
        attention_mask = attention_mask.astype(bool)

        x = nn.Embed(self.vocab_size, self.hidden, name="word_embeddings")(input_ids)
        x = (
            x
            + nn.Embed(self.max_len, self.hidden, name="position_embeddings")(jnp.arange(length))[
                None
            ]
        )
        x = x + nn.Embed(self.type_vocab_size, self.hidden, name="token_type_embeddings")(
            token_type_ids
        )
        x = nn.LayerNorm(epsilon=self.layer_norm_eps, name="embeddings_ln")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        for i in range(self.num_layers):
            x = EncoderLayer(
                self.num_heads,
                self.mlp_dim,
                self.dropout_rate,
                self.dense,
                self.layer_norm_eps,
                self.gelu_approximate,
                name=f"layer_{i}",
            )(x, attention_mask, train)
        if hidden_states:
            return x
        pooled = jnp.tanh(self.dense(self.hidden, name="pooler")(x[:, 0]))
        pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
        return self.dense(self.num_classes, name="classifier")(pooled)

    def _check(
        self,
        input_ids: jax.Array,
        token_type_ids: Optional[jax.Array],
        attention_mask: Optional[jax.Array],
    ) -> None:
        """Raises ValueError for bad shapes/dtypes; all checks are static."""
        if self.hidden % self.num_heads:
            raise ValueError(
                f"hidden={self.hidden} must be a multiple of num_heads={self.num_heads}"
            )
        if input_ids.ndim != 2 or not jnp.issubdtype(input_ids.dtype, jnp.integer):
            raise ValueError(
                f"input_ids must be integer token ids shaped [batch, length], got "
                f"shape {tuple(input_ids.shape)} dtype {input_ids.dtype}"
            )
        if input_ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_len={self.max_len}")
        for name, value in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if value is not None and value.shape != input_ids.shape:
                raise ValueError(
                    f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(value.shape)}"
                )

"""The BERT-family transformer encoder (BERT, RoBERTa, XLM-R) as a TF Hub module.

Post-LayerNorm blocks with exact (erf) GELU, as in Hugging Face's BertModel /
RobertaModel / XLMRobertaModel. Weights are named exactly as in a Hugging Face
checkpoint with the model prefix removed (``embeddings.word_embeddings.weight``,
``encoder.layer.0.attention.self.query.weight``, ``pooler.dense.weight``...), and
dense kernels keep torch's ``[out, in]`` layout on the way in. The query, key and
value projections are stored fused, as one ``attention_self_qkv`` kernel.

The graph is shaped for TensorFlow's CPU kernels (measured in bench/, issue 18):
activations stay ``[tokens, hidden]`` through each block, so every projection is one
2-D MatMul + BiasAdd, which grappler fuses into ``_FusedMatMul``. A 3-D activation
times a 2-D kernel becomes a broadcasting BatchMatMulV2, which Eigen computes as
many small per-sequence products: the same block took 2.2x as long on a CPU without
AVX-512, where TensorFlow leaves oneDNN off. The exact GELU is written in the
operand order grappler's remapper matches, so with oneDNN it runs inside the
intermediate MatMul. Outputs equal the earlier graph's within 3e-6. A second entry
point, ``onednn_call``, spells LayerNorm so that oneDNN fuses it as well (r4).

Interface (TF Hub's BERT encoder interface, as in the seeds' XLM-R/RoBERTa pages):
  inputs:  dict of int32 ``input_word_ids``, ``input_mask``, ``input_type_ids``,
           each ``[batch, seq]`` with both dimensions dynamic.
  outputs: ``pooled_output`` [batch, hidden] (dense + tanh on the first token),
           ``sequence_output`` [batch, seq, hidden], and ``encoder_outputs``, a list
           with one [batch, seq, hidden] tensor per transformer block.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.config import EncoderConfig, ModelConfigError

INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
INPUT_SIGNATURE = {k: tf.TensorSpec([None, None], tf.int32, name=k) for k in INPUT_KEYS}


def expected_weight_shapes(config: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Every weight the encoder needs, with its Hugging Face (torch) shape."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h),
        "pooler.dense.bias": (h,),
    }
    for n in range(config.num_hidden_layers):
        p = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            shapes[p + f"attention.self.{name}.weight"] = (h, h)
            shapes[p + f"attention.self.{name}.bias"] = (h,)
        shapes.update({
            p + "attention.output.dense.weight": (h, h),
            p + "attention.output.dense.bias": (h,),
            p + "attention.output.LayerNorm.weight": (h,),
            p + "attention.output.LayerNorm.bias": (h,),
            p + "intermediate.dense.weight": (i, h),
            p + "intermediate.dense.bias": (i,),
            p + "output.dense.weight": (h, i),
            p + "output.dense.bias": (h,),
            p + "output.LayerNorm.weight": (h,),
            p + "output.LayerNorm.bias": (h,),
        })
    return shapes


def check_weights(config: EncoderConfig, weights: dict[str, np.ndarray], source: str):
    """Raise ModelConfigError naming the first missing or mis-shaped weight."""
    for name, shape in expected_weight_shapes(config).items():
        if name not in weights:
            raise ModelConfigError(f"{source}: missing weight {name!r}")
        if tuple(weights[name].shape) != shape:
            raise ModelConfigError(
                f"{source}: weight {name!r} has shape {tuple(weights[name].shape)}, "
                f"config.json implies {shape}")


class _Dense(tf.Module):
    def __init__(self, weight: np.ndarray, bias: np.ndarray, name: str):
        super().__init__(name=name)
        # torch stores [out, in]; x @ kernel wants [in, out].
        self.kernel = tf.Variable(np.ascontiguousarray(weight.T), name="kernel")
        self.bias = tf.Variable(bias, name="bias")

    def __call__(self, x):
        """x: [tokens, in] -> [tokens, out]."""
        return tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias)


def _gelu_exact(x):
    """0.5 * x * (1 + erf(x / sqrt 2)), as Hugging Face's "gelu", spelled as
    grappler's remapper pattern for MatMul + BiasAdd + GeluExact (operand order
    included), so oneDNN fuses it; tf.nn.gelu divides instead and is not fused."""
    return ((tf.math.erf(x * 0.7071067811865476) + 1.0) * 0.5) * x


class _LayerNorm(tf.Module):
    def __init__(self, gamma: np.ndarray, beta: np.ndarray, epsilon: float, name: str):
        super().__init__(name=name)
        self.gamma = tf.Variable(gamma, name="gamma")
        self.beta = tf.Variable(beta, name="beta")
        self.epsilon = epsilon

    def __call__(self, x, for_onednn: bool = False):
        """x: [tokens, hidden] -> [tokens, hidden]."""
        if for_onednn:
            return self._as_batch_norm(x)
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def _as_batch_norm(self, x):
        """The same normalization spelled as Keras's fused LayerNormalization: every
        token a channel of an NCHW batch norm in training mode (its own mean and
        variance over the hidden axis), then gamma and beta. grappler's remapper
        rewrites exactly this subgraph into oneDNN's one-pass ``_MklLayerNorm``: 2.8x
        faster than the plain spelling on [8192, 384] with oneDNN, but 2.8x slower
        without it (Eigen's FusedBatchNorm transposes NCHW), hence two spellings.
        The raw op, not tf.nn.fused_batch_norm: that raises epsilon to 1e-5 for
        cuDNN, and BERT's is 1e-12."""
        tokens, hidden = tf.shape(x)[0], self.gamma.shape[0]
        channels = tf.reshape(tokens, [1])
        normalized = tf.raw_ops.FusedBatchNormV3(
            x=tf.reshape(x, tf.stack([1, tokens, hidden, 1])),
            scale=tf.fill(channels, 1.0), offset=tf.fill(channels, 0.0),
            mean=tf.constant([], tf.float32), variance=tf.constant([], tf.float32),
            epsilon=self.epsilon, data_format="NCHW", is_training=True)[0]
        return tf.reshape(normalized, tf.shape(x)) * self.gamma + self.beta


class _TransformerBlock(tf.Module):
    def __init__(self, config: EncoderConfig, w: dict[str, np.ndarray], prefix: str, name: str):
        super().__init__(name=name)
        eps = config.layer_norm_eps
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        dense = lambda n: _Dense(w[prefix + n + ".weight"], w[prefix + n + ".bias"], n.replace(".", "_"))
        norm = lambda n: _LayerNorm(w[prefix + n + ".weight"], w[prefix + n + ".bias"], eps, n.replace(".", "_"))
        # One [hidden, 3 x hidden] projection instead of three; the kernel's columns
        # are query, key, value in turn.
        qkv = [prefix + f"attention.self.{n}" for n in ("query", "key", "value")]
        self.qkv = _Dense(np.concatenate([w[n + ".weight"] for n in qkv]),
                          np.concatenate([w[n + ".bias"] for n in qkv]), "attention_self_qkv")
        self.attention_output = dense("attention.output.dense")
        self.attention_norm = norm("attention.output.LayerNorm")
        self.intermediate = dense("intermediate.dense")
        self.output = dense("output.dense")
        self.output_norm = norm("output.LayerNorm")

    def __call__(self, x, attention_bias, batch, seq, for_onednn: bool):
        """x: [batch x seq, hidden] -> [batch x seq, hidden]."""
        qkv = tf.reshape(self.qkv(x), [batch, seq, 3, self.num_heads, self.head_size])
        q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))  # each [batch, heads, seq, head]
        scores = tf.matmul(q, k, transpose_b=True) * (self.head_size ** -0.5)
        probs = tf.nn.softmax(scores + attention_bias, axis=-1)
        context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
        context = tf.reshape(context, [-1, self.num_heads * self.head_size])
        x = self.attention_norm(x + self.attention_output(context), for_onednn)
        hidden = _gelu_exact(self.intermediate(x))
        return self.output_norm(x + self.output(hidden), for_onednn)


class TransformerEncoder(tf.Module):
    """A BERT-family encoder with TF Hub's encoder interface; save it with tf.saved_model."""

    # TF Hub's Reusable SavedModel API: hub.KerasLayer(path, trainable=True) fine-tunes
    # the restored object's ``trainable_variables`` attribute. tf.Module's properties of
    # these names are not saved, so they are shadowed by plain (saved) attributes.
    variables = trainable_variables = None

    def __init__(self, config: EncoderConfig, weights: dict[str, np.ndarray], source: str = "weights"):
        super().__init__(name="transformer_encoder")
        check_weights(config, weights, source)
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.config = config
        self._uses_roberta_positions = config.uses_roberta_positions
        self._padding_idx = config.pad_token_id
        self._hidden_size = config.hidden_size
        self.word_embeddings = tf.Variable(w["embeddings.word_embeddings.weight"], name="word_embeddings")
        self.position_embeddings = tf.Variable(w["embeddings.position_embeddings.weight"], name="position_embeddings")
        self.token_type_embeddings = tf.Variable(w["embeddings.token_type_embeddings.weight"], name="token_type_embeddings")
        self.embedding_norm = _LayerNorm(w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                                         config.layer_norm_eps, "embeddings_LayerNorm")
        self.blocks = [_TransformerBlock(config, w, f"encoder.layer.{n}.", f"layer_{n}")
                       for n in range(config.num_hidden_layers)]
        self.pooler = _Dense(w["pooler.dense.weight"], w["pooler.dense.bias"], "pooler")
        self.variables = list(tf.Module.variables.fget(self))
        self.trainable_variables = list(self.variables)
        self.regularization_losses = []

    def _position_ids(self, input_mask):
        if self._uses_roberta_positions:
            # fairseq/HF RoBERTa: real tokens count from padding_idx + 1, padding gets padding_idx.
            return tf.cumsum(input_mask, axis=1) * input_mask + self._padding_idx
        seq = tf.shape(input_mask)[1]
        return tf.broadcast_to(tf.range(seq)[tf.newaxis, :], tf.shape(input_mask))

    @tf.function(input_signature=[INPUT_SIGNATURE])
    def __call__(self, inputs):
        return self._encode(inputs, for_onednn=False)

    @tf.function(input_signature=[INPUT_SIGNATURE])
    def onednn_call(self, inputs):
        """``__call__``'s outputs (within 1e-5; 6e-6 measured) from a graph spelled
        for oneDNN, whose LayerNorms grappler fuses into one kernel each: the faster choice where
        TensorFlow runs oneDNN (by default on CPUs with AVX-512, or with
        TF_ENABLE_ONEDNN_OPTS=1), the slower one elsewhere. beam-embed picks it
        (transforms/encode.py: encoder_call); TF Hub users keep ``__call__``."""
        return self._encode(inputs, for_onednn=True)

    def _encode(self, inputs, for_onednn: bool):
        ids = inputs["input_word_ids"]
        mask = inputs["input_mask"]
        x = (tf.gather(self.word_embeddings, ids)
             + tf.gather(self.position_embeddings, self._position_ids(mask))
             + tf.gather(self.token_type_embeddings, inputs["input_type_ids"]))
        batch, seq = tf.shape(ids)[0], tf.shape(ids)[1]
        hidden = self._hidden_size
        x = self.embedding_norm(tf.reshape(x, [-1, hidden]), for_onednn)
        attention_bias = (1.0 - tf.cast(mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * -1e9
        encoder_outputs = []
        for block in self.blocks:
            x = block(x, attention_bias, batch, seq, for_onednn)
            encoder_outputs.append(tf.reshape(x, [batch, seq, hidden]))
        sequence_output = encoder_outputs[-1]
        pooled = tf.tanh(self.pooler(sequence_output[:, 0, :]))
        return {"pooled_output": pooled, "sequence_output": sequence_output, "encoder_outputs": encoder_outputs}

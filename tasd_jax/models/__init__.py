"""flax.linen models for pruning, decomposition and the cost model.

Image classifiers take NHWC float images and return logits [B, num_classes]:
`model.apply(variables, images, train=False)`; BatchNorm models (ResNets,
VGG16) keep `batch_stats`, mutable when train=True. BERT takes int32 token ids
[B, L]. Every linear layer is built with the model's `dense` field (default
nn.Dense; kernels [in, out]) so a tile-wise-sparse layer can be plugged in:
`get_model("bert", dense=TWDense)`. `ViT` is a small Vision Transformer on NHWC
images. `from_pretrained(directory)` loads a Hugging Face BERT checkpoint into
`BertEncoder` (`pretrained.py`).
"""

from tasd_jax.models.bert import BertEncoder, EncoderLayer, SelfAttention
from tasd_jax.models.mlp import LeNet5, MLP
from tasd_jax.models.pretrained import (
    from_pretrained,
    minilm_checkpoint_dir,
    pretrained_tokenizer,
    sentence_embeddings,
)
from tasd_jax.models.registry import (MODELS, TOKEN_MODELS, get_model, init_model, input_spec,
                                      register)
from tasd_jax.models.resnet import BasicBlock, BottleneckBlock, CifarResNet, ResNet
from tasd_jax.models.vgg import VGG16
from tasd_jax.models.vit import ViT, ViTBlock

__all__ = [
    "BasicBlock",
    "BertEncoder",
    "BottleneckBlock",
    "CifarResNet",
    "EncoderLayer",
    "LeNet5",
    "MLP",
    "MODELS",
    "ResNet",
    "SelfAttention",
    "TOKEN_MODELS",
    "VGG16",
    "ViT",
    "ViTBlock",
    "from_pretrained",
    "get_model",
    "init_model",
    "input_spec",
    "minilm_checkpoint_dir",
    "pretrained_tokenizer",
    "sentence_embeddings",
    "register",
]

"""Build, convert and load TF Hub-format text modules (preprocessor + encoder).

The modules follow the interface of the TF Hub BERT / RoBERTa / XLM-R modules:
an encoder takes ``{"input_word_ids", "input_mask", "input_type_ids"}`` and returns
``{"pooled_output", "sequence_output", "encoder_outputs"}``; a preprocessor is
callable on strings and exposes ``tokenize`` and ``bert_pack_inputs``.
"""

# Before any module of the project imports TensorFlow: oneDNN's kernels on AVX2 CPUs.
from models.cpu_kernels import prefer_onednn

prefer_onednn()

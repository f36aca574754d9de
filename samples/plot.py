"""Draw the demo's embeddings in 2-D, coloured by language, next to the output.

    python samples/plot.py out/demo/embeddings samples/corpus.txt   # writes out/demo/embeddings-pca.png

The projection is PCA (numpy's SVD of the centred vectors): the two directions
along which the embeddings vary most. Paraphrases in different languages landing
close together is what a multilingual model is for; the all-MiniLM-L6-v2 default is
English-trained, so its languages cluster apart. The sample corpus carries no
language labels, so each line's language is guessed from its script and, for
Latin-script lines, from a few common words (good enough to colour a picture).
"""
import collections
import glob
import hashlib
import re
import sys
import unicodedata

import numpy as np
import pyarrow.parquet as pq

SCRIPTS = {"CJK": "Chinese", "HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HANGUL": "Korean",
           "ARABIC": "Arabic", "CYRILLIC": "Russian", "GREEK": "Greek", "DEVANAGARI": "Hindi",
           "HEBREW": "Hebrew", "THAI": "Thai"}
# Common words of the Latin-script languages, and letters only one of them uses.
WORDS = {
    "English": "the and of to is was a in that for with my your it on at",
    "Spanish": "el la los las que de y en es un una por para se me del muy",
    "French": "le la les des que et est un une du pour pas dans au sur il elle",
    "Italian": "il la di che e è un una per non con sono del della gli",
    "German": "der die das und ist nicht ein eine mit auf ich zu den",
    "Portuguese": "o a os as que de e em um uma para não com do da é",
    "Vietnamese": "và của là có không một những cho được này người trong",
    "Turkish": "bir ve bu da de ne çok için ile mi en",
    "Swahili": "na ni ya wa kwa za la katika hii yangu sana",
}
LETTERS = {"Vietnamese": "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
           "Spanish": "ñ¿¡", "German": "ßäöü", "Portuguese": "ãõç", "French": "çœêëîûù",
           "Turkish": "ğış", "Italian": "òìù"}
URDU_LETTERS = "ٹڈڑںےھۓ۔"  # Arabic-script letters Urdu uses and Arabic does not


def guess_language(line: str) -> str:
    scripts = collections.Counter(unicodedata.name(ch, "?").split()[0] for ch in line if ch.isalpha())
    if scripts and scripts.most_common(1)[0][0] != "LATIN":
        if scripts["HIRAGANA"] or scripts["KATAKANA"]:  # Japanese mixes in Han characters
            return "Japanese"
        if scripts["ARABIC"] and any(ch in URDU_LETTERS for ch in line):
            return "Urdu"
        return SCRIPTS.get(scripts.most_common(1)[0][0], "other")
    words = re.findall(r"\w+", line.lower())
    scores = {language: sum(w in vocabulary.split() for w in words)
              + 3 * sum(ch in LETTERS.get(language, "") for ch in line.lower())
              for language, vocabulary in WORDS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] else "other"


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:2].T


def main(prefix: str, corpus: str) -> str:
    import matplotlib
    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    table = pq.read_table(sorted(glob.glob(f"{prefix}-*-of-*.parquet")))
    ids = table.column("id").to_pylist()
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    with open(corpus, encoding="utf-8") as f:
        text = {hashlib.sha256(line.rstrip("\n").encode()).hexdigest(): line.rstrip("\n")
                for line in f if line.strip()}
    languages = [guess_language(text[i]) for i in ids]
    points = pca_2d(vectors)
    figure, axes = plt.subplots(figsize=(7, 5), dpi=110)
    palette = plt.get_cmap("tab20")
    for k, (language, n) in enumerate(collections.Counter(languages).most_common()):
        mask = np.array([lang == language for lang in languages])
        axes.scatter(points[mask, 0], points[mask, 1], s=12, color=palette(k % 20),
                     label=f"{language} ({n})")
    axes.set_title(f"{len(ids)} embeddings of {corpus}, PCA to 2-D")
    axes.set_xlabel("first principal component")
    axes.set_ylabel("second principal component")
    axes.legend(fontsize=7, loc="best", markerscale=1.5)
    figure.tight_layout()
    path = f"{prefix}-pca.png"
    figure.savefig(path)
    print(f"picture of the embeddings (PCA, coloured by language): {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""
ONNX export: a fitted pipeline without Python
=============================================

Fits a ``MinMaxScaler -> InfoMaxVAETransformer -> LogisticRegression`` pipeline on
scikit-learn's digits, converts it to ONNX with skl2onnx after
:func:`~skinfomax.register_onnx_converter` (whose converter writes the encoder with
``torch.onnx.export``), and runs the graph with onnxruntime, which has runtimes for C, C++,
C#, Java and JavaScript. It then measures how far the graph's outputs are from the Python
model's: the codes of the transformer alone, the probabilities of the pipeline, and the
codes of a convolutional model fed images ``(n, 1, 8, 8)``.

Needs the ``onnx`` extra: ``pip install "skinfomax[onnx]"``.
"""

# %%
# The pipeline
# ------------
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skinfomax import InfoMaxVAETransformer, register_onnx_converter

X, y = load_digits(return_X_y=True)
X = X.astype(np.float32)  # the graph's input type: float32, as most ONNX runtimes take
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, random_state=0, stratify=y
)
pipe = make_pipeline(
    MinMaxScaler(),
    InfoMaxVAETransformer(n_components=8, max_iter=30, n_threads=1, random_state=0),
    LogisticRegression(max_iter=1000),
).fit(X_train, y_train)

# %%
# Conversion and inference
# ------------------------
# ``zipmap=False`` returns the probabilities as one array rather than a list of dicts.
register_onnx_converter()
onnx_pipe = to_onnx(pipe, X_train[:1], options={id(pipe[-1]): {"zipmap": False}})


def run(model, X):
    """The outputs of an ONNX model on X, with onnxruntime."""
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


labels, probabilities = run(onnx_pipe, X_test)
print(f"pipeline: max |probability difference| = "
      f"{np.abs(probabilities - pipe.predict_proba(X_test)).max():.2g}")
print(f"labels agree on {np.mean(labels == pipe.predict(X_test)):.1%} of "
      f"{len(X_test)} held-out digits; accuracy {np.mean(labels == y_test):.3f} (ONNX), "
      f"{pipe.score(X_test, y_test):.3f} (Python)")

# %%
# The codes themselves: the scaler and the transformer, without the classifier.
encoder = pipe[:-1]
(codes,) = run(to_onnx(encoder, X_train[:1]), X_test)
mlp_error = np.abs(codes - encoder.transform(X_test)).max(axis=0)
print(f"MLP codes: max |difference| = {mlp_error.max():.2g}")

# %%
# A convolutional model, fed images
# ---------------------------------
# The graph takes the images' shape ``(n, C, H, W)`` as ``transform`` does.
images_train, images_test = (x.reshape(-1, 1, 8, 8) / 16 for x in (X_train, X_test))
conv = InfoMaxVAETransformer(
    n_components=8, architecture="conv", image_shape=(1, 8, 8), conv_channels=(16, 32),
    max_iter=10, n_threads=1, random_state=0,
).fit(images_train)
(conv_codes,) = run(to_onnx(conv, images_train[:1]), images_test)
conv_error = np.abs(conv_codes - conv.transform(images_test)).max(axis=0)
print(f"conv codes: max |difference| = {conv_error.max():.2g}")

# %%
# Python against ONNX
# -------------------
# Left: every held-out code, Python's against the graph's (they lie on the diagonal).
# Right: the largest difference of each code, at float32 rounding, far below the 1e-5
# that ``tests/test_onnx.py`` allows.
fig, (ax_codes, ax_error) = plt.subplots(1, 2, figsize=(10, 4.2))
expected = encoder.transform(X_test)
ax_codes.scatter(expected.ravel(), codes.ravel(), s=3, alpha=0.4)
ax_codes.set_xlabel("transform (torch)")
ax_codes.set_ylabel("onnxruntime")
ax_codes.set_title("MLP codes of held-out digits")
index = np.arange(len(mlp_error))
ax_error.bar(index - 0.2, mlp_error, width=0.4, label="MLP")
ax_error.bar(index + 0.2, conv_error, width=0.4, label="conv")
ax_error.axhline(1e-5, color="k", linestyle="--", label="tolerance of the tests")
ax_error.set_yscale("log")
ax_error.set_xlabel("code")
ax_error.set_ylabel("max |torch - onnx|")
ax_error.set_title("Largest difference per code")
ax_error.legend()
fig.tight_layout()
plt.show()

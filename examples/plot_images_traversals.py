"""
Images: a convolutional InfoMax VAE, reconstructions and traversals
===================================================================

``architecture="conv"`` trains convolutional networks on images given as flat
rows with ``image_shape=(C, H, W)``. One deterministic info code ``c``
(``n_info_components=1``) is shaped only by reconstruction and the MI term;
:meth:`~skinfomax.InfoMaxVAETransformer.latent_traversal` decodes a digit
while that code sweeps its range, and
:meth:`~skinfomax.InfoMaxVAETransformer.reconstruct` decodes from some codes
only. The 8x8 digits keep this example small; :doc:`/images` shows the same
figures on MNIST.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skinfomax import InfoMaxVAETransformer
from skinfomax import plot_reconstructions, plot_traversal

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_show = X[:1000], X[1000:1006]

vae = InfoMaxVAETransformer(
    n_components=4,
    n_info_components=1,
    alpha=5.0,
    architecture="conv",
    image_shape=(1, 8, 8),
    conv_channels=(16, 32),
    critic_hidden_layer_sizes=(64,),
    max_iter=30,
    n_threads=1,
    random_state=0,
).fit(X_train)

# %%
# Reconstructions of held-out digits
# ----------------------------------
fig = plot_reconstructions(
    X_show, vae.reconstruct(X_show), image_shape=(1, 8, 8), n_images=6
)
plt.show()

# %%
# Sweeping the info code c0
# -------------------------
# From the 2nd to the 98th percentile of c0 over the training digits; the z
# codes stay at each digit's posterior mean.
c0 = vae.transform(X_train)[:, -1]
values = np.percentile(c0, np.linspace(2, 98, 7))
traversals = np.stack([vae.latent_traversal(x, "c0", values) for x in X_show])
fig = plot_traversal(traversals, np.round(values, 2), image_shape=(1, 8, 8))
plt.show()

# %%
# From c alone, from z alone
# --------------------------
# Codes left out are set to their prior mean (z) or training mean (c).
fig, axes = plt.subplots(3, 6, figsize=(7, 3.6))
for row, (label, images) in enumerate(
    [
        ("all", vae.reconstruct(X_show)),
        ("c only", vae.reconstruct(X_show, keep="c")),
        ("z only", vae.reconstruct(X_show, keep="z")),
    ]
):
    for col, image in enumerate(images):
        axes[row, col].imshow(image.reshape(8, 8), cmap="gray", vmin=0, vmax=1)
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
    axes[row, 0].set_ylabel(label)
plt.show()

"""Figures for image models: image grids, latent traversals, reconstructions, training curves,
each a matplotlib Figure (``pip install skinfomax[plot]``). Images are flat rows (give
``image_shape``) or ``(C, H, W)`` arrays; one channel is drawn in grey, three as RGB in [0, 1].
"""

import numpy as np


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("skinfomax's plot functions need matplotlib: "
                          "pip install 'skinfomax[plot]'") from None
    return plt


def _as_images(images, image_shape):
    """``(n, C, H, W)`` array from flat rows or image arrays."""
    images = np.asarray(images, dtype=float)
    if image_shape is not None:
        return images.reshape(-1, *image_shape)
    if images.ndim == 4:
        return images
    if images.ndim == 3:  # (n, H, W)
        return images[:, None]
    raise ValueError(f"Cannot tell the image shape of an array of shape {images.shape}; pass "
                     "image_shape=(C, H, W).")


def _draw(ax, image, vmin, vmax):
    ax.set_xticks([])
    ax.set_yticks([])
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=vmin, vmax=vmax)
    elif image.shape[0] == 3:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
    else:
        raise ValueError(f"Images need 1 or 3 channels to be drawn, got {image.shape[0]}.")


def _grid(rows, row_labels=None, col_labels=None, cell=1.0):
    """Draw a list of rows of ``(C, H, W)`` images on one shared grey scale."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    vmin = min(float(r.min()) for r in rows)
    vmax = max(float(r.max()) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols + 0.6, cell * n_rows + 0.3),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            if j < len(row):
                _draw(ax, row[j], vmin, vmax)
            else:
                ax.axis("off")
            if row_labels is not None and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
            if col_labels is not None and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def plot_images(images, image_shape=None, n_cols=8, titles=None):
    """A grid of images.

    Parameters
    ----------
    images : array-like of shape (n, n_features), (n, C, H, W) or (n, H, W)
    image_shape : tuple (C, H, W) or None
        Needed for flat rows.
    n_cols : int, default=8
        Images per row.
    titles : sequence of str or None
        One title per image.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skinfomax import plot_images
    >>> fig = plot_images(np.random.rand(10, 64), image_shape=(1, 8, 8), n_cols=5)
    >>> len(fig.axes)
    10
    """
    images = _as_images(images, image_shape)
    fig = _grid([images[i : i + n_cols] for i in range(0, len(images), n_cols)])
    if titles is not None:
        for ax, title in zip(fig.axes[: len(images)], titles):
            ax.set_title(title, fontsize=8)
    return fig


def plot_traversal(traversals, values, image_shape=None, row_labels=None):
    """Latent traversals: one row per sample, one column per value of the swept code.

    Parameters
    ----------
    traversals : array-like
        One :meth:`~skinfomax.InfoMaxVAETransformer.latent_traversal` output ``(n_values,
        ...)``, or a stack of them ``(n_samples, n_values, ...)``.
    values : array-like of shape (n_values,)
        The swept values, written above the columns.
    image_shape : tuple (C, H, W) or None
        Needed for flat rows.
    row_labels : sequence of str or None
        One label per row.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    values = np.asarray(values, dtype=float).ravel()
    images = _as_images(traversals, image_shape)
    if len(images) % len(values):
        raise ValueError(f"{len(images)} images do not split into rows of {len(values)} values.")
    rows = list(images.reshape(-1, len(values), *images.shape[1:]))
    return _grid(rows, row_labels=row_labels, col_labels=[f"{v:.2g}" for v in values])


def plot_reconstructions(originals, reconstructions, image_shape=None, n_images=8):
    """Originals in the top row and reconstructions below them.

    Parameters
    ----------
    originals : array-like of shape (n, ...)
    reconstructions : array-like of shape (n, ...) or dict of str -> array-like
        One set of reconstructions, or several keyed by a row label (e.g. the ``keep="c"``,
        ``"z"`` and ``"all"`` outputs of :meth:`~skinfomax.InfoMaxVAETransformer.reconstruct`).
    image_shape : tuple (C, H, W) or None
        Needed for flat rows.
    n_images : int, default=8
        Number of samples (columns) shown.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    if not isinstance(reconstructions, dict):
        reconstructions = {"reconstruction": reconstructions}
    labels = ["original", *reconstructions]
    rows = [_as_images(originals, image_shape)[:n_images]]
    for name, images in reconstructions.items():
        images = _as_images(images, image_shape)[:n_images]
        if images.shape != rows[0].shape:
            raise ValueError(f"reconstructions {name!r} have shape {images.shape[1:]} per image "
                             f"and {len(images)} images; the originals {rows[0].shape[1:]} and "
                             f"{len(rows[0])}.")
        rows.append(images)
    return _grid(rows, row_labels=labels)


def plot_history(history, keys=("loss", "reconstruction", "kl", "mi")):
    """Training curves from ``history_``: one panel per quantity, validation curves
    (``valid_<key>``, with early stopping) in the same panel.

    Parameters
    ----------
    history : list of dict
        A fitted estimator's ``history_``.
    keys : sequence of str
        Quantities to draw.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    plt = _pyplot()
    if not history:
        raise ValueError("history is empty: fit the estimator first.")
    missing = [k for k in keys if k not in history[0]]
    if missing:
        raise ValueError(f"history has no {missing}; it holds {sorted(history[0])}.")
    epochs = [record["epoch"] for record in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot(epochs, [r[key] for r in history], label="train")
        if f"valid_{key}" in history[0]:
            ax.plot(epochs, [r[f"valid_{key}"] for r in history], label="validation")
            ax.legend(fontsize=8)
        ax.set_title(f"{key} (nats per sample)", fontsize=9)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig

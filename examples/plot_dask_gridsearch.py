"""
Grid search on a Dask cluster
=============================

scikit-learn's searches run their fits through joblib, and joblib's ``"dask"``
backend sends them to a :mod:`dask.distributed` cluster: a
:class:`~distributed.LocalCluster` here, any cluster in production. The
results equal the sequential search's for the same ``random_state``
(``tests/test_dask.py`` checks it).

Each worker process runs one fit at a time (``threads_per_worker=1``) and
torch inside it uses the worker's share of the cores: dask starts workers
with ``OMP_NUM_THREADS=1``, and ``n_threads`` on the estimator raises it for
the fit when a worker owns more cores. Needs ``pip install "skinfomax[dask]"``.
"""

import os

import joblib
import matplotlib.pyplot as plt
import pandas as pd
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from skinfomax import InfoMaxVAETransformer, reconstruction_scorer

X, _ = load_digits(return_X_y=True)
X = X[:400] / 16.0

n_workers = 2
cores_per_worker = max(1, (os.cpu_count() or 1) // n_workers)
vae = InfoMaxVAETransformer(
    hidden_layer_sizes=(128,),
    critic_hidden_layer_sizes=(128,),
    batch_size=32,
    max_iter=15,
    learning_rate=3e-3,
    critic_learning_rate=3e-3,
    n_threads=cores_per_worker,
    random_state=0,
)
grid = {"alpha": [0.0, 10.0], "beta": [0.5, 1.0], "n_components": [2, 4]}

# The guard matters when this runs as a script: worker processes are spawned
# and re-import the main module.
if __name__ == "__main__":
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
    )
    with cluster, Client(cluster) as client:
        print(client)
        search = GridSearchCV(vae, grid, scoring=reconstruction_scorer, cv=3)
        with joblib.parallel_backend("dask"):
            search.fit(X)

    results = pd.DataFrame(search.cv_results_["params"])
    results["-recon MSE"] = search.cv_results_["mean_test_score"]
    print(
        results.sort_values("-recon MSE", ascending=False).to_string(
            index=False
        )
    )
    print("best:", search.best_params_)

    # Mean held-out score of each candidate, the best one highlighted.
    scores = results["-recon MSE"].to_numpy()
    labels = [
        f"alpha={p['alpha']:g} beta={p['beta']:g} k={p['n_components']}"
        for p in search.cv_results_["params"]
    ]
    colors = ["tab:blue"] * len(scores)
    colors[search.best_index_] = "tab:orange"
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(range(len(scores)), -scores, color=colors)
    ax.set_yticks(range(len(scores)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("held-out reconstruction MSE (3-fold mean; lower is better)")
    ax.set_title("Grid search on the Dask cluster (k: n_components)")
    fig.tight_layout()
    plt.show()

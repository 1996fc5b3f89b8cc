"""The same InfoMax VAE (``_common.MODEL``) written as plain PyTorch loops, as a user would:
``tight`` (one data tensor, batches sliced from a permutation, the critic run once over the
joint and shuffled pairs stacked, one backward for both optimisers, no host sync inside an
epoch) and ``typical`` (a DataLoader, a VAE step then a separate critic step on detached
codes, ``loss.item()`` per step). Nothing here imports skinfomax; only the initial Gaussian
variance follows the same rule (data variance, floored), so the losses are comparable."""

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def mlp(sizes):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class Model(nn.Module):
    def __init__(self, n_features=784, hidden=(512, 256), n_z=10, critic=(256, 256)):
        super().__init__()
        self.n_z = n_z
        self.encoder = mlp([n_features, *hidden, 2 * n_z])
        self.decoder = mlp([n_z, *reversed(hidden), n_features])
        self.critic = mlp([n_features + n_z, *critic, 1])
        self.log_var = nn.Parameter(torch.zeros(n_features))

    def vae_parameters(self):
        return [*self.encoder.parameters(), *self.decoder.parameters(), self.log_var]

    def forward(self, x):
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        x_hat = self.decoder(z)
        recon = 0.5 * ((x - x_hat) ** 2 * torch.exp(-self.log_var) + self.log_var + LOG_2PI).sum(1)
        kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
        return recon.mean(), kl.mean(), z

    def nwj(self, x, z):
        z_shuffled = z[torch.randperm(z.shape[0], device=z.device)]
        t = self.critic(torch.cat([torch.cat([x, z], 1), torch.cat([x, z_shuffled], 1)]))
        t_joint, t_marginal = t.squeeze(1).chunk(2)
        return t_joint.mean() - torch.exp(t_marginal - 1).mean()


def setup(X, seed, device="cpu"):
    """The data as a tensor on ``device`` and the model, its Gaussian variance from the data."""
    torch.manual_seed(seed)
    X = torch.from_numpy(X).to(device)
    model = Model(X.shape[1]).to(device)
    with torch.no_grad():
        model.log_var.copy_(torch.log(X.var(0) + 1e-3 * X.var(0).mean()))
    return X, model


def train_tight(X, epochs=5, batch_size=128, lr=1e-3, seed=0, device="cpu"):
    X, model = setup(X, seed, device)
    fused = X.device.type == "cuda"  # what a careful GPU user turns on
    vae_opt = torch.optim.Adam(model.vae_parameters(), lr=lr, fused=fused)
    critic_opt = torch.optim.Adam(model.critic.parameters(), lr=lr, fused=fused)
    n_batches = X.shape[0] // batch_size
    for _ in range(epochs):
        total = torch.zeros((), device=X.device)
        for idx in torch.randperm(X.shape[0], device=X.device).tensor_split(n_batches):
            x = X[idx]
            recon, kl, z = model(x)
            mi = model.nwj(x, z)
            loss = recon + kl - mi
            vae_opt.zero_grad()
            critic_opt.zero_grad()
            loss.backward()
            vae_opt.step()
            critic_opt.step()
            total += loss.detach()
        _ = float(total) / n_batches  # one sync per epoch
    return model


def train_typical(X, epochs=5, batch_size=128, lr=1e-3, seed=0):
    X, model = setup(X, seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X), batch_size=batch_size, shuffle=True, drop_last=True
    )
    vae_opt = torch.optim.Adam(model.vae_parameters(), lr=lr)
    critic_opt = torch.optim.Adam(model.critic.parameters(), lr=lr)
    for _ in range(epochs):
        running = 0.0
        for (x,) in loader:
            recon, kl, z = model(x)
            loss = recon + kl - model.nwj(x, z)  # VAE step, critic held fixed
            vae_opt.zero_grad()
            loss.backward()
            vae_opt.step()
            critic_loss = -model.nwj(x, z.detach())  # critic step
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            running += loss.item()
    return model


import numpy as np

from lsr import distill_loss, metrics

rng = np.random.default_rng(0)
z = rng.normal(scale=2.0, size=(20000, 10))
p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
labels = (rng.random((len(z), 1)) > np.cumsum(p, axis=1)).sum(axis=1)
logits = 3.0 * z
fit, held = slice(0, 10000), slice(10000, None)

for norm in ("l1", "l2", "max"):
    print(norm, float(metrics.expected_calibration_error(logits[held], labels[held], norm=norm)))
# l1 0.2897300412598577
# l2 0.29854590912399315
# max 0.40707798553491914

diagram = metrics.reliability_diagram(logits[held], labels[held], n_bins=5)
print(np.round(diagram.confidence, 3), np.round(diagram.accuracy, 3), diagram.count)
# [0.    0.352 0.516 0.702 0.948] [0.    0.225 0.331 0.403 0.632] [   0.  187. 1469. 1963. 6381.]

T = metrics.fit_temperature(logits[fit], labels[fit])  # 2.9681 (the planted 3)
scaled = metrics.apply_temperature(logits[held], T)
print(
    float(metrics.negative_log_likelihood(logits[held], labels[held])),
    float(metrics.negative_log_likelihood(scaled, labels[held])),
)  # NLL 2.155 -> 1.337
print(float(metrics.expected_calibration_error(scaled, labels[held])))  # ECE 0.290 -> 0.0089

# Penultimate-layer projection: features (N, D); final-layer weights (K, D) or (D, K).
features = rng.normal(size=(6, 32))
kernel = rng.normal(size=(32, 10))  # a Keras/Flax Dense kernel (D, K)
coords, basis = metrics.penultimate_projection(features, kernel, (0, 1, 2))
print(coords.shape, basis.shape)  # (6, 2) (2, 32), basis rows orthonormal

# Distillation: soft-target cross-entropy at temperature 4, times 16 (or its KL form).
student, teacher = rng.normal(size=(2, 4, 10))
print(
    float(distill_loss(student, teacher, temperature=4.0)),  # 37.18682622478366
    float(distill_loss(student, teacher, temperature=4.0, kl=True)),
)  # 0.8020358091885633

# Figures (matplotlib; created without pyplot, saved as PNG).
metrics.plot_reliability_diagram(logits[held], labels[held], save_path="reliability.png")
metrics.plot_penultimate_projection(
    features, np.array([0, 1, 2, 0, 1, 2]), kernel, (0, 1, 2), save_path="projection.png"
)

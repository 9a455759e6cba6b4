"""Bytes each rank moves per step: lsr's vocab-parallel loss vs gathering the logits."""


def ring_all_reduce(payload_bytes, ranks):
    # A ring all-reduce sends (and receives) 2 (P - 1) / P of the buffer per rank.
    return 2 * (ranks - 1) / ranks * payload_bytes


def lsr_vocab_parallel(tokens, ranks, compute_bytes=4):
    # Forward: MAX of N values, then one SUM of 3N values; backward: none.
    return ring_all_reduce(tokens * compute_bytes, ranks) + ring_all_reduce(
        3 * tokens * compute_bytes, ranks
    )


def naive_all_gather(tokens, vocab, ranks, logit_bytes):
    # Each rank receives the other ranks' (P - 1) / P of the N x V logits.
    return (ranks - 1) / ranks * tokens * vocab * logit_bytes


tokens, vocab = 2**20, 256_000
for ranks in (2, 8, 64):
    ours = lsr_vocab_parallel(tokens, ranks)
    for name, b in (("bf16", 2), ("fp32", 4)):
        naive = naive_all_gather(tokens, vocab, ranks, b)
        print(
            f"P={ranks:3d} lsr {ours / 1e6:8.1f} MB  naive all-gather ({name}) "
            f"{naive / 1e9:8.1f} GB  ratio {naive / ours:8.0f}"
        )
print("payload of the measured case (N=12 positions, float32):", 12 * 4, "+", 3 * 12 * 4, "bytes")

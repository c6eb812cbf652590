"""The planner's predicted peak next to published peak-memory figures, for the settings they were
measured in. A sanity table, not a fit: no constant in xmcfit.plan.memory is tuned to these rows.

Source: the dynamic-sparse-training XMC method's paper (NeurIPS 2024), Amazon-3M, BERT-base, seq 128,
batch 128, fan-in 128, fp16 AMP, AdamW: sparse 13.5 GiB, dense 46.3 GiB (as quoted in DESIGN.md).
"""

from __future__ import annotations

from common import GIB

from xmcfit.plan.memory import Layout, predict
from xmcfit.plan.profiles import load_dataset, load_encoder


def amazon_3m_layout() -> Layout:
    ds = load_dataset("Amazon-3M")
    return Layout(encoder=load_encoder("bert-base-uncased").to_spec(), seq_len=128, precision="fp16_amp",
                  gradient_checkpointing=False, micro_batch=128, grad_accum=1, pooling="mean", intermediate_dim=0,
                  classifier_kind="sparse", n_labels=ds.n_labels, fan_in=128, value_dtype="float32", optimizer="adamw",
                  weight_decay=1e-4, update_rounding="none", loss_chunk_size=65536, bias=True, aux_enabled=False,
                  n_clusters=1, rewiring_enabled=True, rewiring_chunk_rows=8192)


def main() -> None:
    layout = amazon_3m_layout()
    rows = [("Amazon-3M sparse k=128", predict(layout).predicted_peak_bytes, 13.5),
            ("Amazon-3M dense", predict(layout.as_dense()).predicted_peak_bytes, 46.3)]
    print(f"{'setting':<26} {'predicted GiB':>14} {'published GiB':>14} {'ratio':>7}")
    ratios = []
    for name, predicted_bytes, published_gib in rows:
        ratio = predicted_bytes / GIB / published_gib
        ratios.append(ratio)
        print(f"{name:<26} {predicted_bytes / GIB:>14.2f} {published_gib:>14.2f} {ratio:>7.3f}")
    print("SUMMARY " + " ".join(f"{n.split()[1]}_ratio={r:.3f}" for (n, _, _), r in zip(rows, ratios))
          + f" sparse_predicted_gib={rows[0][1] / GIB:.2f} dense_predicted_gib={rows[1][1] / GIB:.2f}")


if __name__ == "__main__":
    main()

"""Training of frame selectors. `harness.train.tspo`: the TSPO temporal agent (group policy optimisation);
`harness.train.data`: its data sources (harness tasks such as the needle train split, TSPO-10K JSONL);
`harness.train.plot`: reward and score curves of a run."""
from harness.train.tspo import TSPOTrainConfig, Trainer, train_tspo

__all__ = ["TSPOTrainConfig", "Trainer", "train_tspo"]

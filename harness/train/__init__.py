"""Training of frame selectors: the TSPO temporal agent (group policy optimisation).

    config     TSPOTrainConfig: every hyper-parameter, with its meaning (`harness train tspo --help`)
    objective  rewards, advantages, rollout log-probabilities and the loss, as pure functions
    tspo       the Trainer: steps, distributed data parallel, checkpoints and resume (`train_tspo`)
    rundir     the files of a run directory and the per-step log line
    checkpoint a checkpoint as safetensors + JSON (a resume unpickles nothing)
    export     the trained agent in the TSPO-0.4B layout, or the bare selector
    episode    what a data source gives the trainer per question and step
    data       harness tasks as a source (the needle train split), and which source a run's `data` names
    tspo10k    TSPO-10K JSONL rows and the official needle-in-a-haystack episodes
    plot       reward and score curves of a run (`harness train plot`)
"""

"""The mini Qwen2.5-VL: a real `Qwen2_5_VLForConditionalGeneration` of ~1 M parameters, trained here on needle frames
and shipped as `mini-qwen2.5-vl` (harness/miniworld/weights/).

Everything is built offline. Modules, in the order a model is made:

    build     tokenizer corpus, processor and mini config (the chat format is `backbones.qwen2_5_vl.chat`)
    world     which frames a question is shown (oracle, crowded, no evidence), rendered frame pools, fresh questions
    batches   training examples (`Recipe`) and their model inputs, without the video processor (`fast_inputs`)
    train     the losses, two training-only probes, batched vision attention and the loop (`train_mini_qwen`)
    evaluate  teacher-forced letter accuracy and generated answers through the backbone, per selection kind
    main      the command line: `harness miniworld qwen train|eval` (scripts/train_mini_qwen.sh on a GPU machine)

The shipped weights' training.json records the commands (five stages on one GPU, ~29k steps of 64 questions,
~34 min; stages 4-5 add `crowded_times` selections) and held-out accuracies.
"""

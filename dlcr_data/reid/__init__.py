"""Reference ReID baseline consuming the shards: model, losses, sampler, DLCR pairing, training, evaluation."""

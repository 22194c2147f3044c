"""Named training set-ups: flag values that `train.py --preset=NAME` starts from (flags given on
the command line still win)."""

PRESETS = {
    # The paper's CIFAR-10 run (openai/pixel-cnn train.py defaults, README): 16 images per
    # replica; on 8 replicas the global batch is the paper's 128.
    "cifar10": dict(model="pixel_cnn_pp", dataset="cifar10", nr_resnet=5, nr_filters=160,
                    nr_logistic_mix=10, resnet_nonlinearity="concat_elu", dropout_p=0.5,
                    batch_size=16, init_batch_size=16, learning_rate=1e-3, lr_decay=0.999995,
                    polyak_decay=0.9995, max_epochs=5000, save_interval=20),
    # A few minutes on 2 CPU cores: real 8x8 digits bundled with scikit-learn. The EMA decay
    # is shorter than the paper's 0.9995 because the run has only ~700 steps.
    "demo": dict(model="pixel_cnn_pp", dataset="digits", nr_resnet=2, nr_filters=32,
                 nr_logistic_mix=5, resnet_nonlinearity="concat_elu", dropout_p=0.0,
                 batch_size=32, init_batch_size=32, learning_rate=2e-3, lr_decay=0.9995,
                 polyak_decay=0.99, max_epochs=8, save_interval=4, num_samples=64),
}

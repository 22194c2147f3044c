"""PixelSNAIL (Chen et al., 2018) in Keras 3: a faithful port of neocxi/pixelsnail-public's
`h12_noup_smallkey` spec built from the PixelCNN++ layers of `pixel_cnn_pp`, plus a Bernoulli
output for binarized MNIST (the set-up of the PyTorch PixelSNAIL in pytorch-generative)."""

"""What is inside an image, answered from the layer streams: the operating system, the packages (with the
layer that introduced each) and the wasted space, with syft's and dive's rules (../shared/docs/inside.md).

One pass per layer (:mod:`.scan`) lists the layer and keeps only what the catalogers and the efficiency
count need; its :class:`~.model.LayerScan` is cached by layer digest, so ``packages()``, ``efficiency()``,
``os_release()`` and ``files()`` of images sharing layers read each layer once. The image-level answers are
computed from the scans of an image's layers, oldest first (:mod:`.stack`, :mod:`.osrelease`,
:mod:`.efficiency`). The catalogers (:mod:`.catalogers`) are pure functions of one file's bytes.
This package never imports pandas (the facade builds the frames).
"""

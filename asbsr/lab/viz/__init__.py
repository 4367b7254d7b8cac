"""The figures that the notebooks draw, one module per topic (``asbsr.lab.viz.degradation`` holds
notebook 01's, the other modules those of the stages and results they are named after). A helper
takes tensors the package has already computed, draws them with matplotlib and returns the figure
or what it drew, so that a notebook stays a short sequence of calls and a test can check what a
figure shows. Nothing here computes a result that anything else depends on, and this package
imports none of its modules: import the one you need, e.g. ``from asbsr.lab.viz import degradation``.
"""

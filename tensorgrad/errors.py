"""The errors tensorgrad raises: one hierarchy, so callers can catch ``TensorgradError``."""


class TensorgradError(Exception):
    """Base class of every error tensorgrad raises."""


class ShapeError(TensorgradError, ValueError):
    """An op was called with shapes it cannot combine; the message names the op and shapes."""


class DtypeError(TensorgradError, TypeError):
    """A dtype that an op or a tensor cannot take (for example an integer tensor with grad)."""


class BackwardError(TensorgradError, RuntimeError):
    """Backward was asked for something the tape cannot give (freed records, missing grad)."""


class GradcheckError(TensorgradError, AssertionError):
    """Analytic and numerical gradients disagree; the message names the input and the entry."""


class AnomalyError(TensorgradError, FloatingPointError):
    """Under ``detect_anomaly``, an op's forward or backward produced NaN or inf."""


class CheckpointError(TensorgradError, OSError):
    """A checkpoint file is missing, truncated, foreign or tampered with."""

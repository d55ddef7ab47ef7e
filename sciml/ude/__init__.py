"""Universal differential equations and neural ODEs on diffrax."""

from sciml.ude._spiral import CubicMLPField as CubicMLPField
from sciml.ude._spiral import NeuralODESpiral as NeuralODESpiral
from sciml.ude._spiral import spiral_dynamics as spiral_dynamics

"""NeurFlow: neuron groups and their functional interactions (Cao et al., ICLR 2025).

The method only: models, patches, activations, integrated gradients, clustering and
circuits. Nothing here knows about databases or command lines.
"""

"""Matching Networks (Vinyals et al., NeurIPS 2016).

A query is classified by attention over the labelled support set: a softmax over the cosine similarities
between the query embedding and every support embedding, summed per class, gives class probabilities;
training minimises their negative log-likelihood. ``predict`` returns log-probabilities, so the base
class's cross-entropy on them is exactly the NLL.

With Full Context Embeddings (``fce=true``, the default, as in Closer Look's re-implementation), the
support embeddings are contextualised by a bidirectional LSTM over the support set (g(x_i) = g'(x_i) +
h_fwd + h_bwd), and each query embedding by an attention LSTM that reads the support set for as many
steps as there are support images (f = h after the last step, with a skip connection). Cosine
similarities are multiplied by ``scale`` before the softmax (Vinyals: 1; a sharper softmax trains far
faster, Closer Look uses 100).

@inproceedings{vinyals2016matching,
  title     = {Matching Networks for One Shot Learning},
  author    = {Vinyals, Oriol and Blundell, Charles and Lillicrap, Timothy and Kavukcuoglu, Koray and
               Wierstra, Daan},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2016}
}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_bench.backbones import feature_shape
from fewshot_bench.method import FewShotMethod, Optimisation
from fewshot_bench.options import Option
from fewshot_bench.registry import register_method


def attention_log_probs(query: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor, n_way: int,
                        scale: float, similarity: str = "cosine") -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine attention of each query over the support set and the resulting class log-probabilities.

    Returns ``(attention (n_query, n_support), log_probs (n_query, n_way))``; each attention row sums to 1
    and the class probability is the attention mass on that class's support images (a weighted vote).
    ``similarity="support-unit"`` leaves the query unnormalised (dot products with unit support embeddings), so
    the query's norm sets the softmax's sharpness.
    """
    if similarity == "cosine":
        query = F.normalize(query, dim=1)
    similarity = query @ F.normalize(support, dim=1).t()
    attention = torch.softmax(scale * similarity, dim=1)
    one_hot = F.one_hot(support_labels, n_way).to(attention.dtype)
    probs = attention @ one_hot
    return attention, torch.log(probs.clamp_min(1e-8))


class SupportContext(nn.Module):
    """g: bidirectional LSTM over the support embeddings, added to them (Vinyals' FCE for the support set)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)

    def forward(self, support: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(support.unsqueeze(0))
        forward, backward = out[0].chunk(2, dim=1)
        return support + forward + backward


class QueryContext(nn.Module):
    """f: attention LSTM reading the contextual support set for ``len(support)`` steps (FCE for queries)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(2 * dim, dim)

    def forward(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        h, c = query, torch.zeros_like(query)
        for _ in range(support.shape[0]):
            attention = torch.softmax(h @ support.t(), dim=1)
            readout = attention @ support
            h, c = self.cell(torch.cat([query, readout], dim=1), (h, c))
            h = h + query
        return h


@register_method("matchingnet")
class MatchingNet(FewShotMethod):
    """Matching Networks: cosine attention over the support set, optional Full Context Embeddings (Vinyals et al. 2016)."""

    paper = "Vinyals et al. Matching Networks for One Shot Learning. NeurIPS 2016."
    default_backbone = "conv4"
    # Vinyals et al. state no optimiser; Closer Look's re-implementation trains every meta-learner with Adam
    # 1e-3 at a constant rate.
    optimisation = Optimisation(lr=1e-3, lr_step=0, source="Chen et al. 2019's re-implementation: Adam 1e-3, "
                                                           "constant (Vinyals et al. state none)")
    options = (
        Option("fce", bool, True, "Full Context Embeddings (support BiLSTM + query attention LSTM)"),
        Option("scale", float, 10.0, "multiplier of cosine similarities before the attention softmax"),
        Option("similarity", str, "cosine", "attention logits: cosine (query and support embeddings normalised, "
               "the paper's c) or support-unit (the raw query against unit support embeddings, as easyfsl and the "
               "TensorFlow re-implementation it follows: the query's norm acts as a learned temperature)",
               ("cosine", "support-unit"), omitted_at_default=True),
    )

    def __init__(self, backbone: nn.Module, image_shape: tuple[int, int, int], **options) -> None:
        super().__init__(backbone, image_shape, **options)
        c, h, w = feature_shape(backbone, image_shape)
        dim = c * h * w
        if options["fce"]:
            self.support_context = SupportContext(dim)
            self.query_context = QueryContext(dim)

    def predict_features(self, support_features, support_labels, query_features, n_way):
        # The head (FCE LSTMs, attention, log-probabilities) runs in float32 even under bf16 autocast: in
        # bf16 the 3- and 5-shot FER2013 cells diverged on an H100 after 250-950 episodes (loss back to
        # ln 4, then NaN); on a CPU, bf16 autocast stalled the same cell near ln 4 unless the head ran in
        # float32 (docs/methods.md has the curves).
        with torch.autocast(device_type=support_features.device.type, enabled=False):
            return self._head(support_features.flatten(1).float(), support_labels, query_features.flatten(1).float(),
                              n_way)

    def _head(self, support_features, support_labels, query_features, n_way):
        if self.config["fce"]:
            support_features = self.support_context(support_features)
            query_features = self.query_context(query_features, support_features)
        return attention_log_probs(query_features, support_features, support_labels, n_way, self.config["scale"],
                                   self.config["similarity"])[1]

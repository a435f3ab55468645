"""ACCR: cross-modal attention and a learned registration head on two CoMIR encoders.

The review's ACCR (Anatomy-Aware Cross-Modal Contrastive Registration; docs/explanation/accr.md)
as a model family beside CoMIR:

* **Encoders**: the two CoMIR networks (:class:`~comir.network.model.Tiramisu`, one per
  modality, early blocks optionally shared: :func:`comir.training.ablations.share_blocks`).
  ACCR's stage 1 is CoMIR training (with ``training.shared_blocks``, ``training.self_similarity``,
  ``training.anatomy`` and ``training.negatives`` as wanted), so a trained model file gives them.
  They always run in eval mode: their BatchNorm statistics stay those of stage 1 whether their
  weights are fine-tuned or not (:meth:`.model.ACCRNet.train`).
* **Tokens** at a coarse level: each CoMIR is standardised (per image and channel: CoMIRs have no
  fixed scale) and cut into ``patch`` x ``patch`` px squares, the reference's side by side, the
  floating's every ``key_stride`` px (denser, so that a reference token's match lies less than a
  token from a floating token). One strided convolution shared by both modalities (their CoMIRs
  live in one space) embeds a square with half a square of context around it; then LayerNorm and,
  with ``positional``, a 2-D sinusoidal encoding of the square's centre (:func:`.attention.positional_encoding`).
* **Cross-attention** (:class:`.attention.CrossAttention`): multi-head scaled dot-product attention, queries
  from the reference's tokens, keys and values from the floating's. Its ablation (``attention:
  false``, :class:`.attention.CosineMatching`): the weights are the plain cosines of the tokens.
* **Registration head**: reference token ``r`` at ``p_r`` gets the soft correspondence
  ``c_r = sum_j w_rj q_j / sum_j w_rj``, the attention-weighted mean of the floating token centres
  ``q_j`` within ``match_radius`` key steps of its most attended one (weights averaged over the
  heads; :func:`.geometry.local_soft_argmax`), and a confidence in (0, 1) from its attended
  features (a small MLP). The floating -> reference matrix is the confidence-weighted
  least-squares fit sending ``c_r`` onto ``p_r``, started from the minimal-sample fit that most
  confidence agrees with (:func:`.geometry.consensus_start`, RANSAC's hypothesis step) and made
  robust to wrong correspondences by reweighting (:func:`.geometry.robust_fit`): rigid (angle,
  tx, ty) or affine (6 parameters), in the project's
  convention (:mod:`comir.geometry`: 2x3, points (x, y), pixels of the images given). A fit
  rather than a regression of the parameters from pooled features (as in Deep Closest Point,
  Wang and Solomon 2019): it is in pixel units by construction, equivariant to translations,
  and trains in few steps. With ``field``, a coarse backward displacement field on the
  reference grid (:mod:`comir.deformation`'s convention: reference pixel ``x`` shows the
  floating image at ``x + field(x)``): per token the confidence-weighted blend of its own
  correspondence and the fitted matrix's where the two lie within a token of each other (farther,
  the matrix's alone: a wrong match, not a deformation), bilinearly upsampled to every reference
  pixel. It has no parameters of its own, so any trained model gives one.

Its modules, each importing only those below it in this list:

* :mod:`.checkpoint`: the model file (:func:`.checkpoint.save_accr`, :func:`.checkpoint.load_accr`);
* :mod:`.model`: :class:`.model.ACCRConfig`, :class:`.model.ACCRNet` and its output;
* :mod:`.attention`: :class:`.attention.CrossAttention`, its ablation and the positional encodings;
* :mod:`.geometry`: token centres, points moved by matrices, sampling, the transform fits.

The modules are imported by their own names (``from comir.network.accr.model import ACCRNet``):
this package imports nothing.

Inputs are the networks' inputs (``(N, C, H, W)``, :mod:`comir.imaging.preprocess`) with sides
divisible by :attr:`.model.ACCRNet.multiple`; reference and floating may differ in size. The
model file is a CoMIR model file (:mod:`comir.network.checkpoint`) with an ``accr`` entry: its
encoders are a CoMIR model of their own.
"""

"""What the cross-task representation learning paper (002) states, as far as our copy shows.

Fu Z., Jiao J., Suttie M., Noble J.A. "Cross-Task Representation Learning for Anatomical
Landmark Detection". MLMI 2020 (MICCAI workshop), LNCS 12436, doi:10.1007/978-3-030-59861-7_59;
arXiv:2009.13635.

Every number of the paper's Table 1 (ME, AUC, FR per method) and of its implementation details
(image size, sigma, lambda, T, batch, epochs, learning rate, FR threshold) was lost in the text
extraction we have (``shared/papers/002_*.txt``). A search of the stored public pages (arXiv
abstract and HTML, the Springer chapter) found only the abstract, so these values are ``None``
here and the report shows "not in the text". Nothing below is a guessed number: only the
dataset facts and the qualitative statements the text does contain.
"""

from __future__ import annotations

__all__ = [
    "CITATION",
    "LABEL",
    "NOT_IN_TEXT",
    "SEARCHED",
    "METHOD_NAMES",
    "TABLE1",
    "DATASET",
    "SETTINGS",
    "STATEMENTS",
]

CITATION = (
    "Fu Z., Jiao J., Suttie M., Noble J.A. Cross-Task Representation Learning for Anatomical "
    "Landmark Detection. MLMI 2020, LNCS 12436 (2020), doi:10.1007/978-3-030-59861-7_59; "
    "arXiv:2009.13635."
)

#: how published values are labelled in tables and figures
LABEL = "published (Fu et al. 2020)"

#: what the report shows in place of a number the text extraction lost
NOT_IN_TEXT = "not in the text"

#: where the lost numbers were looked for (none had them: abstracts only)
SEARCHED: tuple[str, ...] = (
    "https://arxiv.org/abs/2009.13635 (abstract only in the stored pages)",
    "http://doi.org/10.1007/978-3-030-59861-7_59 (Springer preview: abstract only)",
)

#: display names of the methods (Section 3.3)
METHOD_NAMES: dict[str, str] = {
    "hg": "HG",
    "fe": "FE",
    "ftp": "FTP",
    "ft": "FT",
    "ctd_cd": "CTD-CD",
    "ctd_ed": "CTD-ED",
    "ctd_com": "CTD-Com",
}

#: Table 1: ME (pixels), AUC and FR per method; lost in the text extraction (``None``)
TABLE1: dict[str, dict[str, float | None]] = {
    m: {"me_px": None, "auc": None, "fr": None} for m in METHOD_NAMES
}

#: Section 3.1: the data
DATASET: dict[str, object] = {
    "n_images": 1549,
    "source": "CIFASD 2D face textures of 3dMD 3D photogrammetry, 4 sites in the USA",
    "age_years": (4, 18),
    "split": "random 80 % training/validation, 20 % test",
    "train_fraction": 0.8,
    "landmarks": "anatomical facial landmarks of one eye per image (set not in the text)",
}

#: Section 3.1 and 2.1: implementation details (``None``: the value was lost in the extraction)
SETTINGS: dict[str, object] = {
    "image_size": None,
    "sigma": None,
    "lambda": None,
    "temperature": None,
    "batch_size": None,
    "epochs": None,
    "lr": None,
    "threshold_px": None,
    "optimizer": "Adam",
    "lr_schedule": "polynomial decay",
    "flip_prob": 0.5,
    "scaling": "random scaling (range not in the text)",
    "heatmap_stride": 4,
    "deconv_channels": 256,
    "source_network": "ResNet-50 pre-trained on VGGFace2",
}

#: qualitative statements of the paper, quoted in the claims table
STATEMENTS: dict[str, str] = {
    "ctd_vs_ft": "'the proposed methods consistently outperform standard fine-tuning solutions' "
    "(Section 3.3; FE, FTP, FT in Table 1 and Fig. 5)",
    "few_labels": "'works well with few labeled data, and outperforms other compared "
    "approaches' (Abstract)",
    "ed_vs_cd": "'CTD-ED performs slightly better than CTD-CD considering the scores of ME and "
    "AUC' (Section 3.3)",
    "com_vs_ed": "'CTD-Com using both regularization losses achieves similar results in CTD-ED' "
    "(Section 3.3)",
    "fr": "higher AUC or lower FR = more of the test set well predicted; CTD outperforms "
    "fine-tuning on the CED curves (Section 3.2-3.3, Fig. 5)",
    "small_budget": "regularisation improves 'performance under limited training samples' "
    "(Abstract, Section 4)",
    "hg": "stacked Hourglass (HG) is a compared baseline the proposed approach outperforms "
    "(Section 3.3, Abstract)",
    "openvino": "not in the paper (PyTorch only); OpenVINO FP32/INT8 deployment is this "
    "project's extension",
}

"""BibTeX for the harness and for the paper behind every zoo loss, for `harness cite`.

Kept here rather than in losses/: a loss file's source hash is part of its identity on the
leaderboard, and a bibliography is not part of a loss's arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.records import RunRecord

__all__ = ["HARNESS_BIBTEX", "PAPERS", "LOSS_PAPERS", "DATASET_PAPERS", "ENCODER_PAPERS", "FLOOR_PAPERS", "bibtex_for",
           "cite_block"]

HARNESS_BIBTEX = """@software{dml_harness,
  title = {dml-harness: a fair-comparison benchmark harness for deep metric learning losses},
  note = {Frozen protocol, class-disjoint splits and search as in Musgrave, Belongie and Lim (2020)},
  version = {{version}},
  year = {2026}
}"""

PAPERS = {
    "musgrave2020reality": """@inproceedings{musgrave2020reality,
  title = {A Metric Learning Reality Check},
  author = {Musgrave, Kevin and Belongie, Serge and Lim, Ser-Nam},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year = {2020}
}""",
    "hadsell2006dimensionality": """@inproceedings{hadsell2006dimensionality,
  title = {Dimensionality Reduction by Learning an Invariant Mapping},
  author = {Hadsell, Raia and Chopra, Sumit and LeCun, Yann},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2006}
}""",
    "schroff2015facenet": """@inproceedings{schroff2015facenet,
  title = {FaceNet: A Unified Embedding for Face Recognition and Clustering},
  author = {Schroff, Florian and Kalenichenko, Dmitry and Philbin, James},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2015}
}""",
    "hermans2017defense": """@article{hermans2017defense,
  title = {In Defense of the Triplet Loss for Person Re-Identification},
  author = {Hermans, Alexander and Beyer, Lucas and Leibe, Bastian},
  journal = {arXiv preprint arXiv:1703.07737},
  year = {2017}
}""",
    "song2016lifted": """@inproceedings{song2016lifted,
  title = {Deep Metric Learning via Lifted Structured Feature Embedding},
  author = {Song, Hyun Oh and Xiang, Yu and Jegelka, Stefanie and Savarese, Silvio},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2016}
}""",
    "sohn2016npair": """@inproceedings{sohn2016npair,
  title = {Improved Deep Metric Learning with Multi-class N-pair Loss Objective},
  author = {Sohn, Kihyuk},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2016}
}""",
    "chen2020simclr": """@inproceedings{chen2020simclr,
  title = {A Simple Framework for Contrastive Learning of Visual Representations},
  author = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {International Conference on Machine Learning (ICML)},
  year = {2020}
}""",
    "khosla2020supcon": """@inproceedings{khosla2020supcon,
  title = {Supervised Contrastive Learning},
  author = {Khosla, Prannay and Teterwak, Piotr and Wang, Chen and Sarna, Aaron and Tian, Yonglong and
            Isola, Phillip and Maschinot, Aaron and Liu, Ce and Krishnan, Dilip},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2020}
}""",
    "cakir2019fastap": """@inproceedings{cakir2019fastap,
  title = {Deep Metric Learning to Rank},
  author = {Cakir, Fatih and He, Kun and Xia, Xide and Kulis, Brian and Sclaroff, Stan},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2019}
}""",
    "yuan2019snr": """@inproceedings{yuan2019snr,
  title = {Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning},
  author = {Yuan, Tongtong and Deng, Weihong and Tang, Jian and Tang, Yinan and Chen, Binghui},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2019}
}""",
    "wang2019multisimilarity": """@inproceedings{wang2019multisimilarity,
  title = {Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning},
  author = {Wang, Xun and Han, Xintong and Huang, Weilin and Dong, Dengke and Scott, Matthew R.},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2019}
}""",
    "sun2020circle": """@inproceedings{sun2020circle,
  title = {Circle Loss: A Unified Perspective of Pair Similarity Optimization},
  author = {Sun, Yifan and Cheng, Changmao and Zhang, Yuhan and Zhang, Chi and Zheng, Liang and
            Wang, Zhongdao and Wei, Yichen},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2020}
}""",
    "yu2019tuplet": """@inproceedings{yu2019tuplet,
  title = {Deep Metric Learning with Tuplet Margin Loss},
  author = {Yu, Baosheng and Tao, Dacheng},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year = {2019}
}""",
    "movshovitz2017proxynca": """@inproceedings{movshovitz2017proxynca,
  title = {No Fuss Distance Metric Learning using Proxies},
  author = {Movshovitz-Attias, Yair and Toshev, Alexander and Leung, Thomas K. and Ioffe, Sergey and
            Singh, Saurabh},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year = {2017}
}""",
    "kim2020proxyanchor": """@inproceedings{kim2020proxyanchor,
  title = {Proxy Anchor Loss for Deep Metric Learning},
  author = {Kim, Sungyeon and Kim, Dongwon and Cho, Minsu and Kwak, Suha},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2020}
}""",
    "wu2017sampling": """@inproceedings{wu2017sampling,
  title = {Sampling Matters in Deep Embedding Learning},
  author = {Wu, Chao-Yuan and Manmatha, R. and Smola, Alexander J. and Kr{\\"a}henb{\\"u}hl, Philipp},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year = {2017}
}""",
    "qian2019softtriple": """@inproceedings{qian2019softtriple,
  title = {SoftTriple Loss: Deep Metric Learning Without Triplet Sampling},
  author = {Qian, Qi and Shang, Lei and Sun, Baigui and Hu, Juhua and Li, Hao and Jin, Rong},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year = {2019}
}""",
    "zhai2019classification": """@inproceedings{zhai2019classification,
  title = {Classification is a Strong Baseline for Deep Metric Learning},
  author = {Zhai, Andrew and Wu, Hao-Yu},
  booktitle = {British Machine Vision Conference (BMVC)},
  year = {2019}
}""",
    "wang2018cosface": """@inproceedings{wang2018cosface,
  title = {CosFace: Large Margin Cosine Loss for Deep Face Recognition},
  author = {Wang, Hao and Wang, Yitong and Zhou, Zheng and Ji, Xing and Gong, Dihong and Zhou, Jingchao and
            Li, Zhifeng and Liu, Wei},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2018}
}""",
    "deng2019arcface": """@inproceedings{deng2019arcface,
  title = {ArcFace: Additive Angular Margin Loss for Deep Face Recognition},
  author = {Deng, Jiankang and Guo, Jia and Xue, Niannan and Zafeiriou, Stefanos},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2019}
}""",
    "henderson2017efficient": """@article{henderson2017efficient,
  title = {Efficient Natural Language Response Suggestion for Smart Reply},
  author = {Henderson, Matthew and Al-Rfou, Rami and Strope, Brian and Sung, Yun-Hsuan and
            Luk{\\'a}cs, L{\\'a}szl{\\'o} and Guo, Ruiqi and Kumar, Sanjiv and Miklos, Balint and Kurzweil, Ray},
  journal = {arXiv preprint arXiv:1705.00652},
  year = {2017}
}""",
    "oord2018representation": """@article{oord2018representation,
  title = {Representation Learning with Contrastive Predictive Coding},
  author = {van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
  journal = {arXiv preprint arXiv:1807.03748},
  year = {2018}
}""",
    "gunther2023jina": """@article{gunther2023jina,
  title = {Jina Embeddings 2: 8192-Token General-Purpose Text Embeddings for Long Documents},
  author = {G{\\"u}nther, Michael and Ong, Jackmin and Mohr, Isabelle and Abdessalem, Alaeddine and Abel, Tanguy and
            Akram, Mohammad Kalim and Guzman, Susana and Mastrapas, Georgios and Sturua, Saba and Wang, Bo and
            Werk, Maximilian and Wang, Nan and Xiao, Han},
  journal = {arXiv preprint arXiv:2310.19923},
  year = {2023}
}""",
    "su2022cosent": """@misc{su2022cosent,
  title = {CoSENT (I): A More Effective Sentence Embedding Scheme than Sentence-BERT},
  author = {Su, Jianlin},
  howpublished = {\\url{https://kexue.fm/archives/8847}},
  note = {Blog post, in Chinese},
  year = {2022}
}""",
    "huang2024cosent": """@article{huang2024cosent,
  title = {CoSENT: Consistent Sentence Embedding via Similarity Ranking},
  author = {Huang, Xiang and Peng, Hao and Zou, Dongcheng and Liu, Zhiwei and Li, Jianxin and Liu, Kay and Wu, Jia and
            Su, Jianlin and Yu, Philip S.},
  journal = {IEEE/ACM Transactions on Audio, Speech, and Language Processing},
  year = {2024}
}""",
    "li2023angle": """@article{li2023angle,
  title = {AnglE-optimized Text Embeddings},
  author = {Li, Xianming and Li, Jing},
  journal = {arXiv preprint arXiv:2309.12871},
  year = {2023}
}""",
    "reimers2019sentencebert": """@inproceedings{reimers2019sentencebert,
  title = {Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Conference on Empirical Methods in Natural Language Processing (EMNLP-IJCNLP)},
  year = {2019}
}""",
    "miller1995wordnet": """@article{miller1995wordnet,
  title = {WordNet: A Lexical Database for English},
  author = {Miller, George A.},
  journal = {Communications of the ACM},
  volume = {38},
  number = {11},
  pages = {39--41},
  year = {1995}
}""",
    "wang2020minilm": """@inproceedings{wang2020minilm,
  title = {MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers},
  author = {Wang, Wenhui and Wei, Furu and Dong, Li and Bao, Hangbo and Yang, Nan and Zhou, Ming},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2020}
}""",
    "pedregosa2011scikit": """@article{pedregosa2011scikit,
  title = {Scikit-learn: Machine Learning in {P}ython},
  author = {Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
            Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
            Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal = {Journal of Machine Learning Research},
  volume = {12},
  pages = {2825--2830},
  year = {2011}
}""",
}

# What a row ran on, beside its loss: the dataset's source, the pretrained encoder a text protocol trains on,
# and the library a floor is (a row cites each that applies).
DATASET_PAPERS = {"wordnet": ["miller1995wordnet"]}
ENCODER_PAPERS = {"all-MiniLM-L6-v2": ["wang2020minilm", "reimers2019sentencebert"]}
FLOOR_PAPERS = {"tfidf": ["pedregosa2011scikit"]}

# The papers of each registered loss, as its `paper` field names them (harness losses prints it).
LOSS_PAPERS = {
    "contrastive": ["hadsell2006dimensionality"],
    "triplet": ["hermans2017defense"],
    "batch_hard": ["hermans2017defense"],
    "batch_all": ["hermans2017defense"],
    "batch_hard_soft_margin": ["hermans2017defense"],
    "batch_semi_hard": ["schroff2015facenet"],
    "lifted_structure": ["song2016lifted", "hermans2017defense"],
    "n_pairs": ["sohn2016npair"],
    "ntxent": ["sohn2016npair", "chen2020simclr"],
    "supcon": ["khosla2020supcon"],
    "fastap": ["cakir2019fastap"],
    "snr_contrastive": ["yuan2019snr"],
    "multi_similarity": ["wang2019multisimilarity"],
    "multi_similarity_miner": ["wang2019multisimilarity"],
    "circle": ["sun2020circle"],
    "tuplet_margin": ["yu2019tuplet"],
    "proxy_nca": ["movshovitz2017proxynca"],
    "proxy_anchor": ["kim2020proxyanchor"],
    "margin": ["wu2017sampling"],
    "margin_per_class": ["wu2017sampling"],
    "soft_triple": ["qian2019softtriple"],
    "normalized_softmax": ["zhai2019classification"],
    "cosface": ["wang2018cosface"],
    "arcface": ["deng2019arcface"],
    "multiple_negatives_ranking": ["henderson2017efficient", "oord2018representation"],
    "multiple_negatives_symmetric": ["henderson2017efficient", "gunther2023jina"],
    "cosent": ["su2022cosent", "huang2024cosent"],
    "angle": ["li2023angle"],
    "online_contrastive": ["hadsell2006dimensionality", "reimers2019sentencebert"],
}


def bibtex_for(loss_name: str, harness_version: str, *, dataset: str | None = None,
               encoder: str | None = None) -> str:
    """The harness's entry, the reality check's (whose protocol this is), the loss's (or floor's) papers',
    and those of the dataset and the pretrained encoder where they have one.

    A plug-in loss has no entry here; the untrained baseline has no paper of its own.
    """
    keys = ["musgrave2020reality", *LOSS_PAPERS.get(loss_name, []), *FLOOR_PAPERS.get(loss_name, []),
            *DATASET_PAPERS.get(dataset or "", []), *ENCODER_PAPERS.get(encoder or "", [])]
    keys = list(dict.fromkeys(keys))  # each once, in that order
    return "\n\n".join([HARNESS_BIBTEX.replace("{version}", harness_version), *(PAPERS[key] for key in keys)])


def cite_block(record: RunRecord) -> str:
    """What a paper needs to cite one leaderboard row: how to rerun it, what it ran on, and BibTeX."""
    env = record.environment
    packages = env.get("packages", {})
    harness_version = packages.get("dml-harness") or "unknown"
    commit = env.get("git_commit") or "unknown (not run from a git checkout)"
    dirty = " (with uncommitted changes)" if env.get("git_dirty") else ""
    lines = [
        f"loss: {record.loss['name']}  (identity {record.key.loss_identity or '-'})",
        f"run: {record.run_id}",
        f"rerun: git checkout {env.get('git_commit') or '<commit>'} && {env.get('command') or '-'}",
        f"protocol: {record.protocol['name']}  hash {record.protocol_hash}",
        f"dataset: {record.dataset['name']}  version {record.dataset['version']}",
        f"harness: {harness_version}  commit {commit}{dirty}",
        "packages: " + ", ".join(f"{name} {version}" for name, version in sorted(packages.items()) if version),
        f"machine: {env.get('platform', '-')}, {env.get('device', '-')}, jobs {env.get('jobs', '-')}",
        "",
        bibtex_for(record.loss["name"], harness_version, dataset=record.key.dataset,
                   encoder=(record.protocol.get("text") or {}).get("encoder")),
    ]
    return "\n".join(lines)

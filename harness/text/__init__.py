"""The text room: text sets (WordNet, a researcher's CSV/TSV/JSONL), the sentence-transformers encoder, its
feature cache and the network trained on it, behind the modality interface in `harness.text.modality`."""

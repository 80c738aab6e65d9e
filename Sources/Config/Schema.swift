/// Every configuration key, its type, range, default and meaning. docs/configuration.md is written from
/// this table (`cladmop config --markdown`), and a test checks that the two agree.
public enum ConfigSchema {
    static let bundled = ["data/top/phase_I_train.csv", "data/top/phase_I_valid.csv", "data/top/phase_II_valid.csv",
                          "data/top/phase_III_valid.csv", "data/top/toy_train.csv", "data/top/toy_valid.csv", "data/top/toy_test.csv"]

    public static let keys: [ConfigKey] = [
        // data
        ConfigKey(path: "data.files", kind: .stringList, defaultValue: .strings(bundled),
                  doc: "TOP-format CSV files that are featurized and from which the SCT pretraining corpus is drawn."),
        ConfigKey(path: "data.exclude_file", kind: .string(allowed: nil), defaultValue: .string("data/top/heldout_nctids.txt"),
                  doc: "NCT ids never used in pretraining or training (the benchmark's test trials). Empty string: none."),
        ConfigKey(path: "data.icd_hierarchy", kind: .string(allowed: nil), defaultValue: .string("data/icd10/icd10cm_2025_hierarchy.tsv"),
                  doc: "ICD-10-CM tree (id, parent, depth, description) used for hierarchical code embeddings."),
        ConfigKey(path: "data.feature_store", kind: .string(allowed: nil), defaultValue: .string("data/features/top.store"),
                  doc: "Feature store written by `cladmop featurize` and read by training."),
        ConfigKey(path: "data.validation_fraction", kind: .double(0.01...0.5), defaultValue: .double(0.12),
                  doc: "Share of the SCT corpus, latest NCT ids first, held out for validation (SPEC: 10-15 %)."),
        ConfigKey(path: "data.skip_bad_rows", kind: .bool, defaultValue: .bool(false),
                  doc: "Skip malformed CSV rows (counted and reported) instead of stopping with an error."),
        ConfigKey(path: "data.max_sentences", kind: .int(1...512), defaultValue: .int(32),
                  doc: "Criterion sentences per trial kept for the model (the first ones)."),
        ConfigKey(path: "data.max_mol_tokens", kind: .int(1...4096), defaultValue: .int(128),
                  doc: "SMILES tokens per trial (all drugs concatenated) kept for the model."),
        ConfigKey(path: "data.max_molecules", kind: .int(1...64), defaultValue: .int(8),
                  doc: "Molecule-position embeddings (drugs per trial beyond this share the last one)."),
        ConfigKey(path: "data.max_codes", kind: .int(1...256), defaultValue: .int(16),
                  doc: "ICD-10 codes per trial kept for the model."),
        // encoder
        ConfigKey(path: "encoder.model_dir", kind: .string(allowed: nil), defaultValue: .string("models/all-MiniLM-L6-v2"),
                  doc: "Folder of the frozen BERT-family text encoder (config.json, vocab.txt, model.safetensors)."),
        ConfigKey(path: "encoder.max_tokens", kind: .int(8...512), defaultValue: .int(256),
                  doc: "WordPiece tokens per sentence, [CLS] and [SEP] included (longer sentences are truncated)."),
        ConfigKey(path: "encoder.batch_tokens", kind: .int(64...65536), defaultValue: .int(4096),
                  doc: "Padded tokens per encoder batch (sentences are batched by length)."),
    ]
}

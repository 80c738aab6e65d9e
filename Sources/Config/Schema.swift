/// Every configuration key, its type, range, default and meaning. docs/configuration.md is written from
/// this table (`cladmop config --markdown`), and a test checks that the two agree.
public enum ConfigSchema {
    static let bundled = ["data/top/phase_I_train.csv", "data/top/phase_I_valid.csv", "data/top/phase_II_valid.csv",
                          "data/top/phase_III_valid.csv", "data/top/toy_train.csv", "data/top/toy_valid.csv", "data/top/toy_test.csv"]

    public static let keys: [ConfigKey] = [
        // data
        ConfigKey(path: "data.files", kind: .stringList, defaultValue: .strings(bundled),
                  doc: "TOP-format CSV files that are featurized and from which the SCT pretraining corpus is drawn."),
        ConfigKey(path: "data.synthetic", kind: .bool, defaultValue: .bool(false),
                  doc: "Train on a synthetic store written by `cladmop synth` (data.files and the exclusion list are then ignored)."),
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
        // model
        ConfigKey(path: "model.dim", kind: .int(8...4096), defaultValue: .int(128), doc: "Width d of the DM branch."),
        ConfigKey(path: "model.heads", kind: .int(1...64), defaultValue: .int(8), doc: "Attention heads h (d must divide by h)."),
        ConfigKey(path: "model.mol_layers", kind: .int(0...32), defaultValue: .int(4), doc: "Self-attention layers of molecule enrichment."),
        ConfigKey(path: "model.dis_layers", kind: .int(0...32), defaultValue: .int(4), doc: "Self-attention layers of disease enrichment."),
        ConfigKey(path: "model.grouping_layers", kind: .int(1...8), defaultValue: .int(3), doc: "Grouping layers G per block (centroids c, c/2, c/4, ...)."),
        ConfigKey(path: "model.self_layers", kind: .int(0...8), defaultValue: .int(2), doc: "Self-attention layers S after each grouping layer."),
        ConfigKey(path: "model.centroids", kind: .int(1...1024), defaultValue: .int(100), doc: "Centroid tokens c of the first grouping layer."),
        ConfigKey(path: "model.icd_depth", kind: .int(1...7), defaultValue: .int(5), doc: "Depths of the ICD-10 tree with their own embedding table (chapter = 1)."),
        ConfigKey(path: "model.seed", kind: .int(0...Int(Int32.max)), defaultValue: .int(1), doc: "Seed of the parameter initialisation (rank 0's values are broadcast)."),
        // loss
        ConfigKey(path: "loss.normalize", kind: .bool, defaultValue: .bool(true), doc: "L2-normalise f_C and f_DM before the logits."),
        ConfigKey(path: "loss.logit_scale", kind: .string(allowed: ["fixed", "learnable"]), defaultValue: .string("fixed"),
                  doc: "fixed: s = exp(loss.tau); learnable: log s is a parameter initialised to log(1/0.07) (CLIP)."),
        ConfigKey(path: "loss.tau", kind: .double(-10...10), defaultValue: .double(0.6), doc: "tau of the fixed logit scale s = exp(tau) (the paper's 0.6)."),
        // train
        ConfigKey(path: "train.global_batch", kind: .int(1...1_000_000), defaultValue: .int(128), doc: "Global batch B over all ranks (rank r owns rows [rB/W, (r+1)B/W))."),
        ConfigKey(path: "train.epochs", kind: .int(1...100_000), defaultValue: .int(10), doc: "Epochs over the SCT training split (the last incomplete batch of an epoch is dropped)."),
        ConfigKey(path: "train.max_steps", kind: .int(0...100_000_000), defaultValue: .int(0), doc: "Stop after this many optimizer steps in total (0: no limit)."),
        ConfigKey(path: "train.seed", kind: .int(0...Int(Int32.max)), defaultValue: .int(1), doc: "Seed of the data order: epoch e's order is a permutation seeded by (seed, e), the same for any world size."),
        ConfigKey(path: "train.grad_clip", kind: .double(0...1e6), defaultValue: .double(1.0), doc: "Clip the global gradient norm to this value (0: no clipping)."),
        ConfigKey(path: "train.log_every", kind: .int(1...1_000_000), defaultValue: .int(10), doc: "Steps between train lines in metrics.jsonl and on the terminal."),
        ConfigKey(path: "train.checksum_every", kind: .int(0...1_000_000), defaultValue: .int(50), doc: "Steps between cross-rank parameter checksums (0: never); a mismatch stops the job."),
        ConfigKey(path: "train.eval_every", kind: .int(1...10_000), defaultValue: .int(1), doc: "Epochs between validation evaluations."),
        ConfigKey(path: "train.patience", kind: .int(0...10_000), defaultValue: .int(0), doc: "Stop after this many evaluations without a better validation loss (0: never)."),
        // optimizer
        ConfigKey(path: "optimizer.name", kind: .string(allowed: ["adam", "adamw", "sgd"]), defaultValue: .string("adam"), doc: "Update rule."),
        ConfigKey(path: "optimizer.lr", kind: .double(0...10), defaultValue: .double(1e-4), doc: "Learning rate (the paper's 1e-4 with Adam)."),
        ConfigKey(path: "optimizer.weight_decay", kind: .double(0...10), defaultValue: .double(0), doc: "Weight decay (L2 for adam and sgd, decoupled for adamw)."),
        ConfigKey(path: "optimizer.beta1", kind: .double(0...0.999999), defaultValue: .double(0.9), doc: "Adam beta1."),
        ConfigKey(path: "optimizer.beta2", kind: .double(0...0.999999), defaultValue: .double(0.999), doc: "Adam beta2."),
        ConfigKey(path: "optimizer.eps", kind: .double(0...1), defaultValue: .double(1e-8), doc: "Adam epsilon."),
        ConfigKey(path: "optimizer.schedule", kind: .string(allowed: ["constant", "warmup_cosine"]), defaultValue: .string("constant"),
                  doc: "Learning-rate schedule: constant, or linear warm-up then cosine decay to min_lr_ratio at the last step."),
        ConfigKey(path: "optimizer.warmup_steps", kind: .int(0...10_000_000), defaultValue: .int(0), doc: "Warm-up steps of warmup_cosine."),
        ConfigKey(path: "optimizer.min_lr_ratio", kind: .double(0...1), defaultValue: .double(0.1), doc: "Final learning rate / lr for warmup_cosine."),
        // checkpoint
        ConfigKey(path: "checkpoint.every_steps", kind: .int(0...10_000_000), defaultValue: .int(0), doc: "Steps between checkpoints (0: at the end of every epoch only)."),
        ConfigKey(path: "checkpoint.keep_last", kind: .int(1...1000), defaultValue: .int(3), doc: "Newest checkpoints kept (the best one is kept as well)."),
    ]
}

import Communication
import Config
import TextEncoder
import TrialData

extension RunSpec {
    /// The text encoder `encoder.model_dir` names, as a feature store records it: its identity (config, vocabulary,
    /// weights' header, tokenizer settings, and the precision `encoder.precision` resolves to on this machine) and
    /// the checksum of its whole model.safetensors.
    public func encoderFingerprint(comm: Communicator) throws -> (identity: String, weights: String) {
        let precision = resolvedPrecision(encoder.precision, key: "encoder.precision", comm: comm)
        return (try BertEncoder.identity(modelDir: encoder.modelDir, precision: precision),
                try BertEncoder.weightsChecksum(modelDir: encoder.modelDir))
    }

    /// The identity a feature store of `paths` featurized now with this encoder would have (`currentStoreIdentity`).
    public func expectedStoreIdentity(of paths: [String], comm: Communicator) throws -> StoreIdentity {
        let e = try encoderFingerprint(comm: comm)
        return try currentStoreIdentity(paths: paths, encoderIdentity: e.identity, encoderWeights: e.weights, maxTokens: encoder.maxTokens)
    }
}

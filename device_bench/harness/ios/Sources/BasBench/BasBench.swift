// Loading and timing a compiled Core ML model, one compute-unit setting at a time.
// Each result is printed as one line, "BASBENCH {json}", which device_bench/ios.py parses.
import CoreML
import Foundation

public enum BasBench {
    public static let marker = "BASBENCH "

    public static func computeUnits(_ name: String) -> MLComputeUnits? {
        switch name {
        case "cpuOnly": return .cpuOnly
        case "cpuAndGPU": return .cpuAndGPU
        case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
        case "all": return .all
        default: return nil
        }
    }

    /// Inputs of the model's own shapes and types, filled with a mid-grey frame (0.5) and a
    /// zero state: the timing does not depend on the values.
    public static func inputs(for model: MLModel) throws -> [String: MLFeatureValue] {
        var features: [String: MLFeatureValue] = [:]
        for (name, description) in model.modelDescription.inputDescriptionsByName {
            guard let constraint = description.multiArrayConstraint else { continue }
            let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
            let value = name.contains("state") ? 0.0 : 0.5
            for i in 0..<array.count { array[i] = NSNumber(value: value) }
            features[name] = MLFeatureValue(multiArray: array)
        }
        return features
    }

    static func milliseconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }

    /// Load the model with `units`, run `warmup` untimed and `iters` timed predictions (the
    /// stream form feeding `stateOut` back to `stateIn`), and return the JSON line's fields.
    public static func time(
        modelURL: URL, units: String, warmup: Int, iters: Int,
        stateIn: String?, stateOut: String?, device: [String: String]
    ) -> [String: Any] {
        var result: [String: Any] = ["compute_units": units, "device": device]
        guard let computeUnits = computeUnits(units) else {
            result["error"] = "unknown compute units \(units)"
            return result
        }
        do {
            let configuration = MLModelConfiguration()
            configuration.computeUnits = computeUnits
            let loadStart = DispatchTime.now()
            let model = try MLModel(contentsOf: modelURL, configuration: configuration)
            result["load_ms"] = milliseconds(since: loadStart)
            var features = try inputs(for: model)
            var latencies: [Double] = []
            for call in 0..<(warmup + iters) {
                let provider = try MLDictionaryFeatureProvider(dictionary: features)
                let start = DispatchTime.now()
                let output = try model.prediction(from: provider)
                let elapsed = milliseconds(since: start)
                if call >= warmup { latencies.append(elapsed) }
                if let stateIn = stateIn, let stateOut = stateOut,
                   let state = output.featureValue(for: stateOut) {
                    features[stateIn] = state
                }
            }
            result["latencies_ms"] = latencies
        } catch {
            result["error"] = "\(error)"
        }
        return result
    }

    public static func line(_ fields: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]))
            ?? Data("{}".utf8)
        return marker + (String(data: data, encoding: .utf8) ?? "{}")
    }
}

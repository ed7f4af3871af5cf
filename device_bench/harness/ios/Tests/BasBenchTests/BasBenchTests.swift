// The one test device_bench runs on a phone: every compute-unit setting asked for, timed.
// Settings come from TEST_RUNNER_BASBENCH_* variables given to xcodebuild (prefix dropped).
import BasBench
import Foundation
import XCTest

#if canImport(UIKit)
import UIKit
#endif

final class BasBenchTests: XCTestCase {
    func deviceDescription() -> [String: String] {
        var info = utsname()
        uname(&info)
        let machine = withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        var device = ["machine": machine]
        #if canImport(UIKit)
        device["model"] = UIDevice.current.model
        device["os"] = "\(UIDevice.current.systemName) \(UIDevice.current.systemVersion)"
        #else
        device["os"] = ProcessInfo.processInfo.operatingSystemVersionString
        #endif
        return device
    }

    func testLatencyPerComputeUnits() throws {
        let env = ProcessInfo.processInfo.environment
        let warmup = Int(env["BASBENCH_WARMUP"] ?? "") ?? 10
        let iters = Int(env["BASBENCH_ITERS"] ?? "") ?? 100
        let units = (env["BASBENCH_UNITS"] ?? "cpuOnly,cpuAndGPU,cpuAndNeuralEngine,all")
            .split(separator: ",").map(String.init)
        let url = try XCTUnwrap(
            Bundle.module.url(
                forResource: "BaS", withExtension: "mlmodelc", subdirectory: "Resources"),
            "BaS.mlmodelc is not in the test bundle: device_bench copies it there")
        let device = deviceDescription()
        for name in units {
            let fields = BasBench.time(
                modelURL: url, units: name, warmup: warmup, iters: iters,
                stateIn: env["BASBENCH_STATE_IN"], stateOut: env["BASBENCH_STATE_OUT"],
                device: device)
            print(BasBench.line(fields))
            XCTAssertNil(fields["error"], "\(name): \(fields["error"] ?? "")")
        }
    }
}

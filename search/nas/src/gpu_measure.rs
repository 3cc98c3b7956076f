//! Block latencies on the GPU (wgpu) for latency tables (`lut build --arch wgpu`): each block
//! alone as a model, built with the GPU default schedules and run on the first adapter; its
//! latency is the time of its tensor programs in a run by GPU timestamps (without the
//! upload of the input and the read-back of the output, which a block inside a network does
//! not make), or the whole run's wall time where the adapter has no timestamps.

use std::time::Instant;


use crate::blocks::Block;
use crate::build::{build_block, RandomWeights};
use crate::error::{NasError, Result};
use crate::measure::{random_inputs, BlockMeasurement, BlockMeasurer, MeasureOptions, Stats};

/// Measures blocks on the GPU adapter of this machine.
pub struct GpuMeasurer {
    pub options: MeasureOptions,
}

impl GpuMeasurer {
    /// Fails, saying so, when the machine has no GPU adapter.
    pub fn new(options: MeasureOptions) -> Result<GpuMeasurer> {
        if !wgpu_backend::Executor::available() {
            return Err(NasError::Measure(format!("--arch wgpu: {}", wgpu_backend::NO_ADAPTER)));
        }
        Ok(GpuMeasurer { options })
    }
}

impl BlockMeasurer for GpuMeasurer {
    fn measure(&mut self, block: &Block) -> Result<BlockMeasurement> {
        let err = |what: &str, e: String| NasError::Measure(format!("block {}: {what}: {e}", block.key()));
        let bytes = build_block(block, &mut RandomWeights::new(self.options.seed))?;
        let graph = frontend::import_model(&bytes).map_err(|e| err("importing", e.to_string()))?;
        let start = Instant::now();
        let (model, report) = runtime::GpuModel::build(&graph, &runtime::DefaultSchedules).map_err(|e| err("building", e.to_string()))?;
        let compile_s = start.elapsed().as_secs_f64();
        let inputs = random_inputs(&graph, self.options.seed)?;
        for _ in 0..self.options.warmup {
            model.run(&inputs).map_err(|e| err("running", e.to_string()))?;
        }
        let (mut kernels, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..self.options.runs.max(1) {
            let t = Instant::now();
            model.run(&inputs).map_err(|e| err("running", e.to_string()))?;
            wall.push(t.elapsed().as_secs_f64() * 1e3);
            kernels.push(runtime::InProcessModel::profile(&model).iter().map(|p| p.1).sum::<f64>() * 1e3);
        }
        let (kernels, wall) = (Stats::of(&kernels), Stats::of(&wall));
        let programs: Vec<serde_json::Value> = report
            .schedules
            .iter()
            .map(|(name, trace)| serde_json::json!({"name": name, "schedule": serde_json::from_str::<serde_json::Value>(trace).unwrap_or_default()}))
            .collect();
        let round = |x: f64| (x * 1e3).round() / 1e3;
        Ok(BlockMeasurement {
            entry: kernels.entry(),
            median: kernels.median,
            programs: serde_json::Value::Array(programs),
            extra: serde_json::json!({
                "wall_median_ms": wall.median,
                "compile_s": round(compile_s),
                "adapter": model.adapter(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_measured_on_the_gpu() {
        let Ok(mut m) = GpuMeasurer::new(MeasureOptions { runs: 2, warmup: 1, seed: 3, flush_bytes: 0 }) else {
            println!("skipping: {}", wgpu_backend::NO_ADAPTER);
            return;
        };
        let blocks = crate::blocks::space_blocks(1.2, 160).unwrap();
        let pool = blocks.iter().find(|b| b.key().starts_with("AvgPool2D")).expect("the head's pooling block");
        let got = m.measure(pool).unwrap();
        assert_eq!(got.entry.count, 2);
        assert!(got.median > 0.0 && got.entry.mean > 0.0);
        assert!(got.programs[0]["schedule"].to_string().contains("workgroup"), "{}", got.programs);
    }
}

//! Tuning for the wgpu target: every GPU schedule of a task is measured once and checked,
//! a second run resumes without measuring again, and the best recorded schedule is what
//! `--records` gives the wgpu backend. Says so and passes on a machine with no GPU adapter.

use runtime::ScheduleSource;
use tune::gpu::{tune_wgpu, GpuRecordSchedules, WGPU_TARGET};
use tune::records::{RecordFile, RecordSchedules};
use tune::task::{task_key, Task};

const MATMUL: &str = r#"func "matmul_1" {
  param %a: f32[12,40]
  param %b: f32[40,64]
  param %y: f32[12,64]
  for m in 0..12 {
    for n in 0..64 {
      %y[m, n] = 0.0
      for k in 0..40 {
        %y[m, n] = %y[m, n] + %a[m, k] * %b[k, n]
      }
    }
  }
}"#;

#[test]
fn gpu_schedules_are_measured_checked_and_resumed() {
    if !wgpu_backend::Executor::available() {
        println!("skipping: {}", wgpu_backend::NO_ADAPTER);
        return;
    }
    let func = ir::loops::parse_func(MATMUL).unwrap();
    let constants = vec![false; 3];
    let task = Task {
        key: task_key(&func, &constants, WGPU_TARGET),
        name: func.name.clone(),
        target: WGPU_TARGET.into(),
        func: func.clone(),
        constants: constants.clone(),
        weight: 1,
        flops: 0,
    };
    let path = std::env::temp_dir().join(format!("chanasc-gpu-tune-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut records = RecordFile::open(&path).unwrap();
    let results = tune_wgpu(std::slice::from_ref(&task), &mut records, 100, &mut |_, _| {}).unwrap();
    let candidates = passes::schedule::gpu_schedule_candidates(&func).len();
    assert!(candidates >= 4, "{candidates} candidates");
    assert_eq!(results[0].measured, candidates);
    assert_eq!(results[0].failed, 0, "{:?}", records.records.iter().filter_map(|r| r.error.clone()).collect::<Vec<_>>());
    assert!(results[0].default_s.is_some() && results[0].best_s <= results[0].default_s);
    // Resumed: nothing is measured again.
    let mut records = RecordFile::open(&path).unwrap();
    let again = tune_wgpu(std::slice::from_ref(&task), &mut records, 100, &mut |_, _| {}).unwrap();
    assert_eq!(again[0].measured, 0);
    // The best record is the wgpu backend's schedule, and only for the wgpu target.
    let best = records.best(&task.key, WGPU_TARGET).unwrap().trace.clone();
    let schedules = GpuRecordSchedules(RecordSchedules::new(&records));
    assert_eq!(schedules.trace_for(&func, &constants, &llvm_backend::Target::host()), Some(best));
    assert!(RecordSchedules::new(&records).trace_for(&func, &constants, &llvm_backend::Target::host()).is_none());
    let _ = std::fs::remove_file(&path);
}

/// The recorded runner session the demo feeds by default: a copy of `fixtures/clean-session.jsonl`, built in so
/// that `trickle-relay demo` works from any directory. (A test keeps the two identical.)
public enum DemoSession {
    public static let jsonl = #"""
{"type":"runner_ready","runner_job_id":"job-7f3a"}
{"type":"logs","lines":["2026-11-21 10:00:00,001 - scope.server - INFO - Starting pipeline manager","2026-11-21 10:00:00,120 - scope.server - INFO - CUDA device: NVIDIA H100 80GB HBM3"]}
{"type":"telemetry","event":{"type":"session_created","user_id":"user-42","connection_info":{"gpu_type":"H100","fal_region":"us-east","fal_runner_id":"runner-9"}}}
{"type":"telemetry","event":{"type":"pipeline_load_start","pipeline_ids":["streamdiffusion"],"load_start_time_ms":1763719200120}}
{"type":"notification","payload":{"type":"parameters_updated","parameters":{"node_id":"n1","prompt":"a watercolor fox"}}}
{"type":"telemetry","event":{"type":"pipeline_loaded","pipeline_ids":["streamdiffusion"],"load_duration_ms":4210.5,"load_params":{"width":512,"height":512,"t_index_list":[18,26,35]}}}
{"type":"stream_started","request_id":"req-1","channels":[{"url":"https://orch.example/ai/trickle/job-7f3a-in","direction":"in","mime_type":"video/MP2T"},{"url":"https://orch.example/ai/trickle/job-7f3a-out","direction":"out","mime_type":"video/MP2T"}]}
{"type":"telemetry","event":{"type":"stream_started","pipeline_ids":["streamdiffusion"]}}
{"type":"telemetry","event":{"type":"stream_heartbeat","mode":"cloud","frames_in":300,"frames_out":298,"fps_in":30.0,"fps_out":29.8,"elapsed_ms":10000,"since_last_heartbeat_ms":10000,"vram_used_mb":31744,"vram_total_mb":81559}}
{"type":"pong","request_id":"ping-3","timestamp":1763719210.25}
{"type":"telemetry","event":{"type":"error","error":{"error_type":"frame_decode","message":"corrupt frame from peer 203.0.113.7","exception_type":"ValueError","recoverable":true}}}
{"type":"logs","lines":["2026-11-21 10:00:10,500 - scope.server - WARNING - Dropped 2 frames"]}
{"type":"telemetry","event":{"type":"stream_heartbeat","mode":"cloud","frames_in":600,"frames_out":597,"fps_in":30.0,"fps_out":29.9,"elapsed_ms":20000,"since_last_heartbeat_ms":10000,"vram_used_mb":31790,"vram_total_mb":81559}}
{"id":"0b9e6c1e-5d51-4f5a-9a35-2f0c6f1b7e10","type":"stream_trace","timestamp":"1763719220000","data":{"type":"playback_ready","client_source":"scope","timestamp":"1763719220000","session_id":"sess-fixture","connection_id":"conn-fixture"}}
{"type":"stream_stopped","request_id":"req-2"}
{"type":"telemetry","event":{"type":"stream_stopped","pipeline_ids":["streamdiffusion"]}}
{"type":"telemetry","event":{"type":"session_closed","note":"caf\u00e9 \u2713","ratio":0.333333333333333314829616256247}}
"""#
}

#pragma once

#include <string_view>

namespace stagelog::test {

// Seed 004's executionLog example, as JSON.stringify writes it (same keys, same order): tracking
// id 60B3RNTB, three steps and a failure with a stack trace. Tests read it as ordered JSON and
// edit its text (the tracking id), so keep the key order and the text as they are.
constexpr std::string_view kSeed004Document = R"json({
  "tracking_id": "60B3RNTB",
  "execution_id": "exec_1703123456789_xyz123abc",
  "started_at": "2024-01-15T10:30:00.000Z",
  "completed_at": "2024-01-15T10:32:30.000Z",
  "duration_ms": 150000,
  "tier": "comprehensive",
  "company": "Acme Corp",
  "steps": [
    {
      "step": "initialization",
      "timestamp": "2024-01-15T10:30:00.000Z",
      "status": "completed",
      "message": "Started processing for Acme Corp (comprehensive tier)"
    },
    {
      "step": "status_update",
      "timestamp": "2024-01-15T10:30:01.000Z",
      "status": "completed",
      "message": "Updated status to processing"
    },
    {
      "step": "orchestrator_execution",
      "timestamp": "2024-01-15T10:30:02.000Z",
      "status": "in_progress",
      "message": "Starting orchestrator execution..."
    },
    {
      "step": "error_handling",
      "timestamp": "2024-01-15T10:32:30.000Z",
      "status": "failed",
      "message": "Processing failed: AI generation timeout after 480000ms",
      "error_details": "Error: AI generation timeout after 480000ms\n at AIService.generateContent (worker.js:1234:56)"
    }
  ]
})json";

}  // namespace stagelog::test

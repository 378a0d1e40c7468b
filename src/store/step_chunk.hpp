#pragma once

// Steps stored as chunks: the steps one write adds to an attempt, as one JSON array, so that a
// batch of events costs a row per attempt it touches, not a row per step.
//
//   [{"step":"AGENT","ts":1767555015234000000,"status":"completed","message":"Complete (13.2s)",
//     "error":"...","custom":"{\"tokens\":1247}"}, ...]
//
// "error" is absent when a step has no error details; "custom" (the step's other keys, as the
// JSON text Step::custom_json holds, kept byte for byte) is absent when it is "{}".

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/execution.hpp"

namespace stagelog::detail {

void encode_steps(std::span<const Step> steps, std::string& out);

// Appends the chunk's steps to `out`. False (out unchanged) when the text is not a chunk.
bool decode_steps(std::string_view chunk, std::vector<Step>& out);

}  // namespace stagelog::detail

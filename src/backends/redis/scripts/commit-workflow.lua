--[[
  commit-workflow: compare-and-swap on a workflow's revision, with a change-feed event.

  KEYS[1]  {prefix}s:wf:<id>   HASH r=revision, j=workflow record JSON
  KEYS[2]  {prefix}s:wfs       SET of workflow ids
  KEYS[3]  {prefix}s:rev       store revision counter
  KEYS[4]  {prefix}s:feed      STREAM change feed
  KEYS[5]  {prefix}s:stats     HASH wfw = workflow writes (document versions are s:rev - wfw)
  ARGV[1]  workflowId
  ARGV[2]  expected revision, '' = the workflow must not exist
  ARGV[3]  new record JSON (its revision already set to the new revision)
  ARGV[4]  new revision
  ARGV[5]  feed MAXLEN (approximate)
  ARGV[6]  timestamp (epoch ms)
  ARGV[7]  wake-up channel
  ARGV[8]  change event JSON without its revision and action (wake-up: '<revision> <json>')

  Returns { 1, store revision } or { 0, current record JSON or false }.
]]
local current = redis.call('HGET', KEYS[1], 'r')
if ARGV[2] == '' then
  if current then return { 0, redis.call('HGET', KEYS[1], 'j') } end
else
  if not current then return { 0, false } end
  if current ~= ARGV[2] then return { 0, redis.call('HGET', KEYS[1], 'j') } end
end
redis.call('HSET', KEYS[1], 'r', ARGV[4], 'j', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'wfw', 1)
local rev = redis.call('INCR', KEYS[3])
local action = 'workflow_update'
if ARGV[2] == '' then action = 'workflow_create' end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], rev .. '-0',
  'k', 'workflow', 'i', ARGV[1], 'v', ARGV[4], 'a', action, 't', ARGV[6])
redis.call('PUBLISH', ARGV[7], rev .. ' ' .. ARGV[8])
return { 1, rev }

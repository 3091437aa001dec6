-- A HEP v3 dissector for tshark, for the HEP integration test (tests/tests/hep.rs).
--
-- Debian 12's Wireshark (4.0) has no HEP dissector of its own, so the test loads this one with
-- `-X lua_script:tests/hep/hep3.lua`. It is written from the HEP3 specification (sipcapture/HEP, "HEP3 Network
-- Protocol Specification"), not from our encoder: it reads the chunks and hands SIP payloads to Wireshark's own
-- SIP dissector and JSON payloads to its JSON dissector, which is what decodes the messages the test counts.
-- Over TCP it reassembles packets split across segments and dissects every packet of a segment.

local hep3 = Proto("hep3", "HEP version 3")

local f = {
  length = ProtoField.uint16("hep3.length", "Total length"),
  family = ProtoField.uint8("hep3.family", "IP family"),
  protocol = ProtoField.uint8("hep3.protocol", "IP protocol"),
  src_ip = ProtoField.ipv4("hep3.src_ip", "Source IPv4 address"),
  dst_ip = ProtoField.ipv4("hep3.dst_ip", "Destination IPv4 address"),
  src_ip6 = ProtoField.ipv6("hep3.src_ip6", "Source IPv6 address"),
  dst_ip6 = ProtoField.ipv6("hep3.dst_ip6", "Destination IPv6 address"),
  src_port = ProtoField.uint16("hep3.src_port", "Source port"),
  dst_port = ProtoField.uint16("hep3.dst_port", "Destination port"),
  ts_sec = ProtoField.uint32("hep3.ts_sec", "Timestamp, seconds"),
  ts_usec = ProtoField.uint32("hep3.ts_usec", "Timestamp, microseconds"),
  proto_type = ProtoField.uint8("hep3.proto_type", "Protocol type"),
  agent_id = ProtoField.uint32("hep3.agent_id", "Capture agent id"),
  auth_key = ProtoField.string("hep3.auth_key", "Authentication key"),
  correlation_id = ProtoField.string("hep3.correlation_id", "Correlation id"),
  payload = ProtoField.bytes("hep3.payload", "Payload"),
  unknown = ProtoField.bytes("hep3.unknown", "Unknown chunk"),
}
hep3.fields = f

local by_type = {
  [0x0001] = f.family, [0x0002] = f.protocol, [0x0003] = f.src_ip, [0x0004] = f.dst_ip,
  [0x0005] = f.src_ip6, [0x0006] = f.dst_ip6, [0x0007] = f.src_port, [0x0008] = f.dst_port,
  [0x0009] = f.ts_sec, [0x000a] = f.ts_usec, [0x000b] = f.proto_type, [0x000c] = f.agent_id,
  [0x000e] = f.auth_key, [0x0011] = f.correlation_id,
}

-- Dissects the one HEP packet in `buf` (exactly its bytes).
local function dissect_packet(buf, pinfo, tree)
  local sub = tree:add(hep3, buf)
  sub:add(f.length, buf(4, 2))
  local offset, kind, payload = 6, nil, nil
  while offset + 6 <= buf:len() do
    local ctype = buf(offset + 2, 2):uint()
    local clen = buf(offset + 4, 2):uint()
    if clen < 6 or offset + clen > buf:len() then break end
    local value = buf(offset + 6, clen - 6)
    if ctype == 0x000f then
      payload = value
      sub:add(f.payload, value)
    elseif by_type[ctype] then
      sub:add(by_type[ctype], value)
      if ctype == 0x000b then kind = value:uint() end
    else
      sub:add(f.unknown, value)
    end
    offset = offset + clen
  end
  if payload then
    if kind == 1 then
      Dissector.get("sip"):call(payload:tvb(), pinfo, tree)
    elseif kind == 5 or kind == 34 then
      Dissector.get("json"):call(payload:tvb(), pinfo, tree)
    end
  end
  pinfo.cols.protocol = "HEP3"
end

function hep3.dissector(tvb, pinfo, tree)
  local offset = 0
  while offset < tvb:len() do
    local left = tvb:len() - offset
    if left < 6 then
      pinfo.desegment_offset = offset
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return tvb:len()
    end
    if tvb(offset, 4):string() ~= "HEP3" then return 0 end
    local len = tvb(offset + 4, 2):uint()
    if len < 6 then return 0 end
    if left < len then
      pinfo.desegment_offset = offset
      pinfo.desegment_len = len - left
      return tvb:len()
    end
    dissect_packet(tvb(offset, len):tvb(), pinfo, tree)
    offset = offset + len
  end
  return offset
end

-- The test says where HEP is (`-d udp.port==PORT,hep3` / `-d tcp.port==PORT,hep3`).
DissectorTable.get("udp.port"):add_for_decode_as(hep3)
DissectorTable.get("tcp.port"):add_for_decode_as(hep3)

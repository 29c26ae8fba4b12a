//! Property tests for the message layer: any message Iris can build encodes
//! to bytes that decode back to the same message (the corpus tests cover the
//! other direction, bytes → message → bytes), and printing never panics.

use ofp::action::Action;
use ofp::codec::Name;
use ofp::error::ErrorCode;
use ofp::instruction::Instruction;
use ofp::message::*;
use ofp::multipart::*;
use ofp::oxm::Match;
use ofp::packet::MacAddr;
use proptest::collection::vec;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

/// A code not in `known`, for the `Unknown` variants.
fn unknown_u16(known: &'static [u16]) -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("a known code", move |v| !known.contains(v))
}

fn name<const N: usize>() -> impl Strategy<Value = Name<N>> {
    vec(any::<u8>(), N).prop_map(|v| {
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Name(a)
    })
}

fn port() -> impl Strategy<Value = Port> {
    (
        any::<(u32, [u8; 6], u32, u32, u32, u32)>(),
        any::<(u32, u32, u32, u32)>(),
        name::<16>(),
    )
        .prop_map(
            |(
                (port_no, hw, config, state, curr, advertised),
                (supported, peer, curr_speed, max_speed),
                name,
            )| Port {
                port_no,
                hw_addr: MacAddr(hw),
                name,
                config,
                state,
                curr,
                advertised,
                supported,
                peer,
                curr_speed,
                max_speed,
            },
        )
}

fn band(allow_unknown: bool) -> impl Strategy<Value = MeterBand> {
    let known = prop_oneof![
        any::<(u32, u32)>().prop_map(|(rate, burst_size)| MeterBand::Drop { rate, burst_size }),
        any::<(u32, u32, u8)>().prop_map(|(rate, burst_size, prec_level)| MeterBand::DscpRemark {
            rate,
            burst_size,
            prec_level
        }),
        (any::<(u32, u32, u32)>(), bytes(24)).prop_map(
            |((rate, burst_size, experimenter), data)| {
                MeterBand::Experimenter {
                    rate,
                    burst_size,
                    experimenter,
                    data,
                }
            }
        ),
    ];
    let unknown = (unknown_u16(&[1, 2, 0xffff]), any::<(u32, u32)>(), bytes(24)).prop_map(
        |(band_type, (rate, burst_size), data)| MeterBand::Unknown {
            band_type,
            rate,
            burst_size,
            data,
        },
    );
    if allow_unknown {
        prop_oneof![known, unknown].boxed()
    } else {
        known.boxed()
    }
}

fn queue_prop() -> impl Strategy<Value = QueueProp> {
    prop_oneof![
        any::<u16>().prop_map(QueueProp::MinRate),
        any::<u16>().prop_map(QueueProp::MaxRate),
        (any::<u32>(), bytes(20))
            .prop_map(|(experimenter, data)| QueueProp::Experimenter { experimenter, data }),
        (unknown_u16(&[1, 2, 0xffff]), bytes(20))
            .prop_map(|(property, data)| QueueProp::Unknown { property, data }),
    ]
}

fn oxm_id() -> impl Strategy<Value = OxmId> {
    any::<(u32, u32)>().prop_map(|(header, e)| OxmId {
        header,
        experimenter: (header >> 16 == 0xffff).then_some(e),
    })
}

fn feature_id() -> impl Strategy<Value = FeatureId> {
    (any::<u16>(), bytes(8)).prop_map(|(id_type, data)| FeatureId { id_type, data })
}

fn table_prop() -> impl Strategy<Value = TableFeatureProp> {
    use TableFeatureProp as P;
    let known_types: &'static [u16] = &[
        0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 0xfffe, 0xffff,
    ];
    prop_oneof![
        (any::<bool>(), vec(feature_id(), 0..5))
            .prop_map(|(miss, ids)| P::Instructions { miss, ids }),
        (any::<bool>(), bytes(40)).prop_map(|(miss, tables)| P::NextTables { miss, tables }),
        (any::<bool>(), vec(feature_id(), 0..5))
            .prop_map(|(miss, ids)| P::WriteActions { miss, ids }),
        (any::<bool>(), vec(feature_id(), 0..5))
            .prop_map(|(miss, ids)| P::ApplyActions { miss, ids }),
        vec(oxm_id(), 0..6).prop_map(P::Match),
        vec(oxm_id(), 0..6).prop_map(P::Wildcards),
        (any::<bool>(), vec(oxm_id(), 0..6))
            .prop_map(|(miss, fields)| P::WriteSetfield { miss, fields }),
        (any::<bool>(), vec(oxm_id(), 0..6))
            .prop_map(|(miss, fields)| P::ApplySetfield { miss, fields }),
        (any::<(bool, u32, u32)>(), bytes(20)).prop_map(
            |((miss, experimenter, exp_type), data)| P::Experimenter {
                miss,
                experimenter,
                exp_type,
                data
            }
        ),
        (unknown_u16(known_types), bytes(20))
            .prop_map(|(prop_type, data)| P::Unknown { prop_type, data }),
    ]
}

fn table_features() -> impl Strategy<Value = TableFeatures> {
    (
        any::<(u8, u64, u64, u32, u32)>(),
        name::<32>(),
        vec(table_prop(), 0..5),
    )
        .prop_map(
            |(
                (table_id, metadata_match, metadata_write, config, max_entries),
                name,
                properties,
            )| TableFeatures {
                table_id,
                name,
                metadata_match,
                metadata_write,
                config,
                max_entries,
                properties,
            },
        )
}

fn experimenter() -> impl Strategy<Value = Experimenter> {
    (any::<(u32, u32)>(), bytes(32)).prop_map(|((experimenter, exp_type), data)| Experimenter {
        experimenter,
        exp_type,
        data,
    })
}

fn bucket() -> impl Strategy<Value = Bucket> {
    (any::<(u16, u32, u32)>(), vec(any::<u32>(), 0..3)).prop_map(
        |((weight, watch_port, watch_group), outs)| Bucket {
            weight,
            watch_port,
            watch_group,
            actions: outs.into_iter().map(Action::output).collect(),
        },
    )
}

fn counter() -> impl Strategy<Value = Counter> {
    any::<(u64, u64)>().prop_map(|(packet_count, byte_count)| Counter {
        packet_count,
        byte_count,
    })
}

/// The shape group stats and meter stats share: six scalar fields and a
/// list of packet/byte counters.
type Counted = ((u32, u32, u64, u64, u32, u32), Vec<Counter>);

fn counted_entries() -> impl Strategy<Value = Vec<Counted>> {
    vec(
        (
            any::<(u32, u32, u64, u64, u32, u32)>(),
            vec(counter(), 0..4),
        ),
        0..3,
    )
}

fn flow_match() -> impl Strategy<Value = Match> {
    (any::<u32>(), any::<u16>()).prop_map(|(p, t)| Match::new().in_port(p).eth_type(t))
}

fn multipart_reply() -> impl Strategy<Value = MultipartReplyBody> {
    use MultipartReplyBody as B;
    prop_oneof![
        vec(any::<(u8, u32, u64, u64)>(), 0..4).prop_map(|v| B::Table(
            v.into_iter()
                .map(
                    |(table_id, active_count, lookup_count, matched_count)| TableStats {
                        table_id,
                        active_count,
                        lookup_count,
                        matched_count
                    }
                )
                .collect()
        )),
        vec(
            (any::<(u32, u32, u64, u64, u64)>(), any::<(u32, u32)>()),
            0..4
        )
        .prop_map(|v| B::Queue(
            v.into_iter()
                .map(
                    |(
                        (port_no, queue_id, tx_bytes, tx_packets, tx_errors),
                        (duration_sec, duration_nsec),
                    )| {
                        QueueStats {
                            port_no,
                            queue_id,
                            tx_bytes,
                            tx_packets,
                            tx_errors,
                            duration_sec,
                            duration_nsec,
                        }
                    }
                )
                .collect()
        )),
        counted_entries().prop_map(|v| B::Group(
            v.into_iter()
                .map(
                    |(
                        (
                            group_id,
                            ref_count,
                            packet_count,
                            byte_count,
                            duration_sec,
                            duration_nsec,
                        ),
                        bucket_stats,
                    )| {
                        GroupStats {
                            group_id,
                            ref_count,
                            packet_count,
                            byte_count,
                            duration_sec,
                            duration_nsec,
                            bucket_stats,
                        }
                    }
                )
                .collect()
        )),
        vec((any::<u8>(), any::<u32>(), vec(bucket(), 0..3)), 0..3).prop_map(|v| B::GroupDesc(
            v.into_iter()
                .map(|(t, group_id, buckets)| GroupDesc {
                    group_type: GroupType::from(t),
                    group_id,
                    buckets
                })
                .collect()
        )),
        counted_entries().prop_map(|v| B::Meter(
            v.into_iter()
                .map(
                    |(
                        (
                            meter_id,
                            flow_count,
                            packet_in_count,
                            byte_in_count,
                            duration_sec,
                            duration_nsec,
                        ),
                        band_stats,
                    )| {
                        MeterStats {
                            meter_id,
                            flow_count,
                            packet_in_count,
                            byte_in_count,
                            duration_sec,
                            duration_nsec,
                            band_stats,
                        }
                    }
                )
                .collect()
        )),
        vec((any::<(u16, u32)>(), vec(band(true), 0..4)), 0..3).prop_map(|v| B::MeterConfig(
            v.into_iter()
                .map(|((flags, meter_id), bands)| MeterConfig {
                    flags,
                    meter_id,
                    bands
                })
                .collect()
        )),
        vec(table_features(), 0..3).prop_map(B::TableFeatures),
        vec(port(), 0..4).prop_map(B::PortDesc),
        experimenter().prop_map(B::Experimenter),
        (
            unknown_u16(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xffff]),
            bytes(40)
        )
            .prop_map(|(mp_type, body)| B::Unknown { mp_type, body }),
        (
            any::<(u32, u16, u16, u16, u16, u64, u64, u64)>(),
            any::<u8>(),
            flow_match(),
            vec(any::<u32>(), 0..3)
        )
            .prop_map(
                |(
                    (
                        duration_sec,
                        priority,
                        idle_timeout,
                        hard_timeout,
                        flags,
                        cookie,
                        packet_count,
                        byte_count,
                    ),
                    table_id,
                    match_,
                    outs,
                )| {
                    B::Flow(vec![FlowStats {
                        table_id,
                        duration_sec,
                        duration_nsec: 0,
                        priority,
                        idle_timeout,
                        hard_timeout,
                        flags,
                        cookie,
                        packet_count,
                        byte_count,
                        match_,
                        instructions: vec![Instruction::ApplyActions(
                            outs.into_iter().map(Action::output).collect(),
                        )],
                    }])
                }
            ),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u8>(),
            vec(any::<u32>(), 0..3),
            unknown_u16(&[1]),
            bytes(12)
        )
            .prop_map(|(version, words, t, data)| {
                Message::Hello(Hello {
                    version,
                    elements: vec![
                        HelloElement::VersionBitmap(words),
                        HelloElement::Unknown { elem_type: t, data },
                    ],
                })
            }),
        (unknown_u16(&[0xffff]), any::<u16>(), bytes(70)).prop_map(|(kind, code, data)| {
            Message::Error(ErrorMsg::Standard {
                code: ErrorCode::new(kind, code),
                data,
            })
        }),
        (any::<(u16, u32)>(), bytes(30)).prop_map(|((exp_type, experimenter), data)| {
            Message::Error(ErrorMsg::Experimenter {
                exp_type,
                experimenter,
                data,
            })
        }),
        bytes(30).prop_map(Message::EchoRequest),
        experimenter().prop_map(Message::Experimenter),
        any::<(u64, u32, u8, u8, u32, u32)>().prop_map(
            |(datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved)| {
                Message::FeaturesReply(SwitchFeatures {
                    datapath_id,
                    n_buffers,
                    n_tables,
                    auxiliary_id,
                    capabilities,
                    reserved,
                })
            }
        ),
        any::<(u16, u16)>().prop_map(|(flags, miss_send_len)| Message::SetConfig(SwitchConfig {
            flags,
            miss_send_len
        })),
        (any::<u8>(), port()).prop_map(|(r, desc)| Message::PortStatus(PortStatus {
            reason: PortReason::from(r),
            desc
        })),
        any::<(u32, [u8; 6], u32, u32, u32)>().prop_map(
            |(port_no, hw, config, mask, advertise)| {
                Message::PortMod(PortMod {
                    port_no,
                    hw_addr: MacAddr(hw),
                    config,
                    mask,
                    advertise,
                })
            }
        ),
        any::<(u8, u32)>()
            .prop_map(|(table_id, config)| Message::TableMod(TableMod { table_id, config })),
        (any::<(u32, u64)>()).prop_map(|(role, generation_id)| Message::RoleReply(RoleMsg {
            role: ControllerRole::from(role),
            generation_id
        })),
        any::<[u32; 6]>().prop_map(|m| Message::SetAsync(AsyncConfig {
            packet_in_mask: [m[0], m[1]],
            port_status_mask: [m[2], m[3]],
            flow_removed_mask: [m[4], m[5]],
        })),
        (
            0u16..3,
            prop_oneof![Just(0u16), Just(1), Just(2), Just(4), Just(5), Just(13)],
            any::<u32>(),
            vec(band(false), 0..4)
        )
            .prop_map(|(c, flags, meter_id, bands)| Message::MeterMod(MeterMod {
                command: MeterModCommand::from(c),
                flags,
                meter_id,
                bands
            })),
        (0u16..3, 0u8..4, any::<u32>(), vec(bucket(), 0..3)).prop_map(
            |(c, t, group_id, buckets)| {
                Message::GroupMod(GroupMod {
                    command: GroupModCommand::from(c),
                    group_type: GroupType::from(t),
                    group_id,
                    buckets,
                })
            }
        ),
        (
            any::<u32>(),
            vec((any::<(u32, u32)>(), vec(queue_prop(), 0..4)), 0..3)
        )
            .prop_map(|(port, qs)| {
                Message::QueueGetConfigReply(QueueGetConfigReply {
                    port,
                    queues: qs
                        .into_iter()
                        .map(|((queue_id, port), properties)| PacketQueue {
                            queue_id,
                            port,
                            properties,
                        })
                        .collect(),
                })
            }),
        (any::<u16>(), vec(table_features(), 0..3)).prop_map(|(flags, t)| {
            Message::MultipartRequest(MultipartRequest {
                flags,
                body: MultipartRequestBody::TableFeatures(t),
            })
        }),
        (any::<u16>(), multipart_reply())
            .prop_map(|(flags, body)| Message::MultipartReply(MultipartReply { flags, body })),
        (30u8.., bytes(40)).prop_map(|(msg_type, body)| Message::Unknown { msg_type, body }),
    ]
}

proptest! {
    #[test]
    fn built_messages_decode_to_themselves(xid in any::<u32>(), message in message()) {
        let m = OfpMessage::new(xid, message);
        let mut buf = vec![0x5a; 3];
        m.emit(&mut buf);
        let wire = &buf[3..];
        prop_assert_eq!(usize::from(u16::from_be_bytes([wire[2], wire[3]])), wire.len());
        let back = OfpMessage::parse(wire);
        prop_assert_eq!(back.as_ref(), Ok(&m));
        prop_assert!(!m.to_string().is_empty());
        if let Message::MultipartReply(MultipartReply { flags, body: MultipartReplyBody::Flow(owned) }) = &m.message {
            let view = FlowStatsReplyView::new_checked(wire);
            prop_assert!(view.is_ok(), "{:?}", view.err());
            let Ok(view) = view else { return Ok(()) };
            prop_assert_eq!(view.xid(), xid);
            prop_assert_eq!(view.flags(), *flags);
            let viewed: Result<Vec<FlowStats>, _> =
                view.entries().map(|e| e.and_then(|e| e.to_flow_stats())).collect();
            prop_assert_eq!(viewed.as_ref(), Ok(owned));
            for (e, o) in view.entries().zip(owned) {
                let Ok(e) = e else { return Err(TestCaseError::fail("entry")) };
                prop_assert_eq!(
                    (e.table_id(), e.priority(), e.cookie(), e.packet_count(), e.byte_count()),
                    (o.table_id, o.priority, o.cookie, o.packet_count, o.byte_count)
                );
                let m = e.match_();
                prop_assert_eq!(m.as_ref(), Ok(&o.match_));
            }
        }
    }
}
